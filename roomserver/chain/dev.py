"""Dev commands for demos and tests: airdrop, SPL mints, Token-2022 NFT collections, transfers.

Every function talks to a cluster only through the `solana` AsyncClient (the local ledger,
devnet, ...) and waits until its transaction is confirmed. Amounts are raw base units unless
a parameter says `whole`. The CLI (`main(argv)`) prints the addresses it made, one
`name=address` per line; its payer keypair file is created (and airdropped) on first use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.models import TxOpts
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from solders.transaction import VersionedTransaction
from spl.token import instructions as spl
from spl.token import models as splm
from spl.token.models import AuthorityType

from roomserver.chain import token2022
from roomserver.chain.spl_token import MINT_SIZE, TOKEN_2022_PROGRAM, TOKEN_PROGRAMS, decode_mint

LAMPORTS_PER_SOL = 10**9
TOKEN_PROGRAM_ID = Pubkey.from_string(TOKEN_PROGRAMS[0])
TOKEN_2022_PROGRAM_ID = Pubkey.from_string(TOKEN_2022_PROGRAM)


class DevError(RuntimeError):
    pass


async def send(client: AsyncClient, payer: Keypair, instructions: Sequence[Instruction],
               signers: Sequence[Keypair] = ()) -> str:
    """Sign with payer + signers, send with preflight, wait for `confirmed`; the signature."""
    blockhash = (await client.get_latest_blockhash(Confirmed)).value.blockhash
    all_signers = [payer, *[s for s in signers if s.pubkey() != payer.pubkey()]]
    message = Message.new_with_blockhash(list(instructions), payer.pubkey(), blockhash)
    tx = VersionedTransaction(message, all_signers)
    opts = TxOpts(skip_confirmation=False, preflight_commitment=Confirmed)
    return str((await client.send_transaction(tx, opts=opts)).value)


async def airdrop(client: AsyncClient, pubkey: Pubkey, lamports: int) -> str:
    signature = (await client.request_airdrop(pubkey, lamports, Confirmed)).value
    await client.confirm_transaction(signature, Confirmed)
    return str(signature)


async def mint_program(client: AsyncClient, mint: Pubkey) -> Pubkey:
    account = (await client.get_account_info(mint, Confirmed)).value
    if account is None or str(account.owner) not in TOKEN_PROGRAMS:
        raise DevError(f"{mint} is not a token mint")
    return account.owner


async def mint_decimals(client: AsyncClient, mint: Pubkey) -> int:
    account = (await client.get_account_info(mint, Confirmed)).value
    if account is None:
        raise DevError(f"{mint} does not exist")
    return decode_mint(bytes(account.data)).decimals


async def create_mint(client: AsyncClient, payer: Keypair, decimals: int, *,
                      token_2022: bool = False, mint: Keypair | None = None) -> Pubkey:
    """A mint whose mint authority is `payer`."""
    mint = mint or Keypair()
    program = TOKEN_2022_PROGRAM_ID if token_2022 else TOKEN_PROGRAM_ID
    rent = (await client.get_minimum_balance_for_rent_exemption(MINT_SIZE)).value
    await send(client, payer, [
        create_account(CreateAccountParams(from_pubkey=payer.pubkey(), to_pubkey=mint.pubkey(),
                                           lamports=rent, space=MINT_SIZE, owner=program)),
        spl.initialize_mint2(splm.InitializeMint2Params(
            decimals=decimals, program_id=program, mint=mint.pubkey(), mint_authority=payer.pubkey())),
    ], [mint])
    return mint.pubkey()


async def mint_to(client: AsyncClient, payer: Keypair, mint: Pubkey, owner: Pubkey, amount: int) -> Pubkey:
    """Mint `amount` base units into owner's associated token account (created if missing)."""
    program = await mint_program(client, mint)
    decimals = await mint_decimals(client, mint)
    ata = spl.get_associated_token_address(owner, mint, program)
    await send(client, payer, [
        spl.create_idempotent_associated_token_account(payer.pubkey(), owner, mint, program),
        spl.mint_to_checked(splm.MintToCheckedParams(
            program_id=program, mint=mint, dest=ata, mint_authority=payer.pubkey(),
            amount=amount, decimals=decimals)),
    ])
    return ata


async def create_token_account(client: AsyncClient, payer: Keypair, mint: Pubkey, owner: Pubkey) -> Pubkey:
    """A second, non-associated token account of `owner` for `mint`."""
    program = await mint_program(client, mint)
    account = Keypair()
    space = 170 if program == TOKEN_2022_PROGRAM_ID else 165
    rent = (await client.get_minimum_balance_for_rent_exemption(space)).value
    ixs = [create_account(CreateAccountParams(from_pubkey=payer.pubkey(), to_pubkey=account.pubkey(),
                                              lamports=rent, space=space, owner=program))]
    if program == TOKEN_2022_PROGRAM_ID:
        ixs.append(spl.initialize_immutable_owner(splm.InitializeImmutableOwnerParams(
            program_id=program, account=account.pubkey())))
    ixs.append(spl.initialize_account3(splm.InitializeAccount3Params(
        program_id=program, account=account.pubkey(), mint=mint, owner=owner)))
    await send(client, payer, ixs, [account])
    return account.pubkey()


async def mint_to_account(client: AsyncClient, payer: Keypair, mint: Pubkey, account: Pubkey, amount: int) -> str:
    program = await mint_program(client, mint)
    decimals = await mint_decimals(client, mint)
    return await send(client, payer, [spl.mint_to_checked(splm.MintToCheckedParams(
        program_id=program, mint=mint, dest=account, mint_authority=payer.pubkey(),
        amount=amount, decimals=decimals))])


async def transfer(client: AsyncClient, owner: Keypair, mint: Pubkey, to: Pubkey, amount: int,
                   payer: Keypair | None = None) -> str:
    """Move `amount` base units from owner's ATA to the receiver's ATA (created if missing)."""
    payer = payer or owner
    program = await mint_program(client, mint)
    decimals = await mint_decimals(client, mint)
    source = spl.get_associated_token_address(owner.pubkey(), mint, program)
    dest = spl.get_associated_token_address(to, mint, program)
    return await send(client, payer, [
        spl.create_idempotent_associated_token_account(payer.pubkey(), to, mint, program),
        spl.transfer_checked(splm.TransferCheckedParams(
            program_id=program, source=source, mint=mint, dest=dest, owner=owner.pubkey(),
            amount=amount, decimals=decimals)),
    ], [owner])


async def _create_2022_mint(client: AsyncClient, payer: Keypair, mint: Keypair,
                            pointers: list[Instruction], final_extra: int) -> Instruction:
    space = token2022.mint_space(len(pointers))
    rent = (await client.get_minimum_balance_for_rent_exemption(space + final_extra)).value
    return create_account(CreateAccountParams(from_pubkey=payer.pubkey(), to_pubkey=mint.pubkey(),
                                              lamports=rent, space=space, owner=TOKEN_2022_PROGRAM_ID))


def _init_mint(mint: Pubkey, authority: Pubkey) -> Instruction:
    return spl.initialize_mint2(splm.InitializeMint2Params(
        decimals=0, program_id=TOKEN_2022_PROGRAM_ID, mint=mint, mint_authority=authority))


async def create_collection(client: AsyncClient, payer: Keypair, name: str, symbol: str, uri: str,
                            max_size: int = 10_000) -> Pubkey:
    """A Token-2022 collection mint: MetadataPointer + TokenMetadata, GroupPointer + TokenGroup,
    all pointing at the mint itself; `payer` is mint and update authority."""
    mint = Keypair()
    m, me = mint.pubkey(), payer.pubkey()
    pointers = [token2022.initialize_metadata_pointer(m, me, m), token2022.initialize_group_pointer(m, me, m)]
    extra = token2022.metadata_size(name, symbol, uri) + token2022.GROUP_SIZE
    create = await _create_2022_mint(client, payer, mint, pointers, extra)
    await send(client, payer, [
        create, *pointers, _init_mint(m, me),
        token2022.initialize_token_metadata(m, me, m, me, name, symbol, uri),
        token2022.initialize_token_group(m, m, me, me, max_size),
    ], [mint])
    return m


async def mint_nft(client: AsyncClient, payer: Keypair, collection: Pubkey, owner: Pubkey,
                   name: str, symbol: str, uri: str, *, attributes: dict[str, str] | None = None) -> Pubkey:
    """A Token-2022 NFT member of `collection` (payer must be its update authority):
    decimals 0, supply 1 in owner's ATA, mint authority removed."""
    mint = Keypair()
    m, me = mint.pubkey(), payer.pubkey()
    pointers = [token2022.initialize_metadata_pointer(m, me, m), token2022.initialize_group_member_pointer(m, me, m)]
    extra = token2022.metadata_size(name, symbol, uri, attributes) + token2022.MEMBER_SIZE
    create = await _create_2022_mint(client, payer, mint, pointers, extra)
    fields = [token2022.update_token_metadata_field(m, me, k, v) for k, v in (attributes or {}).items()]
    ata = spl.get_associated_token_address(owner, m, TOKEN_2022_PROGRAM_ID)
    await send(client, payer, [
        create, *pointers, _init_mint(m, me),
        token2022.initialize_token_metadata(m, me, m, me, name, symbol, uri), *fields,
        token2022.initialize_member(m, m, me, collection, me),
        spl.create_idempotent_associated_token_account(me, owner, m, TOKEN_2022_PROGRAM_ID),
        spl.mint_to_checked(splm.MintToCheckedParams(
            program_id=TOKEN_2022_PROGRAM_ID, mint=m, dest=ata, mint_authority=me, amount=1, decimals=0)),
        spl.set_authority(splm.SetAuthorityParams(
            program_id=TOKEN_2022_PROGRAM_ID, account=m, authority=AuthorityType.MINT_TOKENS,
            current_authority=me, new_authority=None)),
    ], [mint])
    return m


# -- CLI ----------------------------------------------------------------------------------


def load_keypair(path: Path) -> Keypair:
    """A solana-CLI keypair file (JSON array of 64 bytes); created when missing."""
    if path.exists():
        return Keypair.from_bytes(bytes(json.loads(path.read_text())))
    keypair = Keypair()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(bytes(keypair))))
    path.chmod(0o600)
    return keypair


def _whole(amount: str, decimals: int) -> int:
    raw = Decimal(amount) * 10**decimals
    if raw != raw.to_integral_value() or raw <= 0:
        raise DevError(f"{amount} is not a positive amount with at most {decimals} decimals")
    return int(raw)


async def _run(args: argparse.Namespace) -> list[tuple[str, str]]:
    async with AsyncClient(args.url) as client:
        payer = load_keypair(args.keypair)
        if args.command != "new-wallet" and (await client.get_balance(payer.pubkey())).value < LAMPORTS_PER_SOL:
            await airdrop(client, payer.pubkey(), 10 * LAMPORTS_PER_SOL)
        out: list[tuple[str, str]] = [("payer", str(payer.pubkey()))]
        if args.command == "new-wallet":
            wallet = load_keypair(args.path)
            out = [("wallet", str(wallet.pubkey())), ("keypair", str(args.path))]
        elif args.command == "airdrop":
            out.append(("signature", await airdrop(client, Pubkey.from_string(args.address),
                                                   _whole(args.sol, 9))))
        elif args.command == "create-mint":
            mint = await create_mint(client, payer, args.decimals, token_2022=args.token_2022)
            out.append(("mint", str(mint)))
        elif args.command == "mint":
            mint = Pubkey.from_string(args.mint)
            amount = _whole(args.amount, await mint_decimals(client, mint))
            out.append(("token_account", str(await mint_to(client, payer, mint, Pubkey.from_string(args.wallet), amount))))
        elif args.command == "create-collection":
            out.append(("collection", str(await create_collection(client, payer, args.name, args.symbol, args.uri))))
        elif args.command == "mint-nft":
            nft = await mint_nft(client, payer, Pubkey.from_string(args.collection),
                                 Pubkey.from_string(args.wallet), args.name, args.symbol, args.uri)
            out.append(("nft", str(nft)))
        elif args.command == "transfer":
            owner = load_keypair(args.from_keypair)
            mint = Pubkey.from_string(args.mint)
            amount = _whole(args.amount, await mint_decimals(client, mint))
            out.append(("signature", await transfer(client, owner, mint, Pubkey.from_string(args.to), amount, payer)))
        return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roomserver solana", description="dev commands against a Solana RPC")
    p.add_argument("--url", default=os.environ.get("SOLANA_RPC_URL") or "http://127.0.0.1:8899")
    p.add_argument("--keypair", type=Path, default=Path("data/dev-keypair.json"),
                   help="payer and mint/update authority (created and funded if missing)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("new-wallet", help="write a new keypair file")
    s.add_argument("path", type=Path)
    s = sub.add_parser("airdrop", help="airdrop SOL")
    s.add_argument("address")
    s.add_argument("sol")
    s = sub.add_parser("create-mint", help="create an SPL mint (payer is the mint authority)")
    s.add_argument("--decimals", type=int, default=6)
    s.add_argument("--token-2022", action="store_true")
    s = sub.add_parser("mint", help="mint whole tokens to a wallet's associated account")
    s.add_argument("mint")
    s.add_argument("wallet")
    s.add_argument("amount")
    sub.add_parser("create-collection", help="create a Token-2022 NFT collection")
    s = sub.add_parser("mint-nft", help="mint a Token-2022 NFT of a collection to a wallet")
    s.add_argument("collection")
    s.add_argument("wallet")
    for name in ("create-collection", "mint-nft"):
        c = sub.choices[name]
        c.add_argument("--name", default="Study Pass")
        c.add_argument("--symbol", default="STUDY")
        c.add_argument("--uri", default="https://example.invalid/nft.json")
    s = sub.add_parser("transfer", help="transfer whole tokens from a keypair's account")
    s.add_argument("mint")
    s.add_argument("to")
    s.add_argument("amount")
    s.add_argument("--from-keypair", type=Path, required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        for name, value in asyncio.run(_run(args)):
            print(f"{name}={value}")
    except DevError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
