"""Holdings policy: token and NFT gates, their room hook, and the periodic re-check."""
