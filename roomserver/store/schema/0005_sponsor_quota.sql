-- Sponsored minting's spend: each sponsored intent reserves what the fee payer may pay for it
-- (mint rent + token account rent + signature fees); roomserver.nft.quota sums a UTC day's.
ALTER TABLE nft_mint_intents ADD COLUMN sponsor_lamports bigint NOT NULL DEFAULT 0;
CREATE INDEX nft_mint_intents_sponsored ON nft_mint_intents (created_at) WHERE mode = 'sponsored';
