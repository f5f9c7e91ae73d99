//! Prefix-cache block hashes. Block `i` of a token sequence hashes
//! `(hash of block i-1, the block's token ids, extra keys)`, so equal hashes mean equal whole
//! prefixes, not just equal blocks (vLLM's hash chain). SipHash-1-3 with fixed keys
//! (`DefaultHasher::new`) keeps hashes stable within a build; 64 bits make an accidental
//! collision among even millions of cached blocks vanishingly unlikely.

use std::hash::{DefaultHasher, Hash, Hasher};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub u64);

/// The hash of a full block given its parent's hash (None for the first block).
pub fn block_hash(parent: Option<BlockHash>, tokens: &[u32], extra_key: u64) -> BlockHash {
    let mut h = DefaultHasher::new();
    parent.map(|p| p.0).hash(&mut h);
    tokens.hash(&mut h);
    extra_key.hash(&mut h);
    BlockHash(h.finish())
}

/// Hashes of every full block of `tokens`, in order.
pub fn chain(tokens: &[u32], block_size: usize, extra_key: u64) -> Vec<BlockHash> {
    let mut out: Vec<BlockHash> = Vec::with_capacity(tokens.len() / block_size);
    for block in tokens.chunks_exact(block_size) {
        out.push(block_hash(out.last().copied(), block, extra_key));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_depends_on_whole_prefix() {
        let a = chain(&[1, 2, 3, 4, 5, 6], 2, 0);
        let b = chain(&[9, 2, 3, 4, 5, 6], 2, 0);
        assert_eq!(a.len(), 3);
        // Same tokens in block 1, different parent: different hash.
        assert_ne!(a[1], b[1]);
        assert_eq!(a, chain(&[1, 2, 3, 4, 5, 6, 7], 2, 0));
        assert_ne!(a, chain(&[1, 2, 3, 4, 5, 6], 2, 1));
    }
}
