-- NFT minting: one intent per thing being minted (a highlight or a room's collection).
-- An intent holds the exact transaction the server built and signed with its own keys.
-- Confirmation (wallet-signed) or sending (sponsored) turns it `confirmed` once; a pending
-- intent whose blockhash expired without its mint appearing becomes `abandoned`.
CREATE TABLE nft_mint_intents (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind                    text NOT NULL CHECK (kind IN ('highlight', 'room')),
    subject_id              uuid NOT NULL,
    user_id                 uuid NOT NULL REFERENCES users (id),
    owner_wallet            text NOT NULL,
    fee_payer               text NOT NULL,
    mode                    text NOT NULL CHECK (mode IN ('wallet', 'sponsored')),
    mint_address            text NOT NULL UNIQUE,
    collection_mint         text,
    name                    text NOT NULL,
    symbol                  text NOT NULL,
    metadata_uri            text NOT NULL,
    metadata_cid            text NOT NULL,
    message                 bytea NOT NULL,
    transaction             text NOT NULL,
    blockhash               text NOT NULL,
    last_valid_block_height bigint NOT NULL,
    tx_signature            text UNIQUE,
    status                  text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'abandoned')),
    created_at              timestamptz NOT NULL DEFAULT now(),
    confirmed_at            timestamptz
);
-- At most one live (pending or confirmed) intent per highlight / room: minting happens once.
CREATE UNIQUE INDEX nft_mint_intents_live ON nft_mint_intents (kind, subject_id)
    WHERE status IN ('pending', 'confirmed');
CREATE INDEX nft_mint_intents_user ON nft_mint_intents (user_id) WHERE status = 'pending';
CREATE INDEX nft_highlights_collection ON nft_highlights (collection_mint);
