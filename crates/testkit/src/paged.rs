//! Random paged-attention scenes on the host: several sequences of given lengths with random
//! q, k, v, whose KV blocks are taken from a shuffled pool (so block tables are scattered and
//! non-monotonic, as after real allocation and freeing), plus the flattened inputs of
//! `kv_write` (rows and slot ids) and of `paged_attention` (queries, padded block tables,
//! sequence lengths, query start offsets) for any mix of prefill chunks and decode rows.
//!
//! Cache layout assumed by the slots: `[num_blocks, Hk, block_size, D]`, slot of position
//! `p` = `table[p / bs] * bs + p % bs` (vLLM's slot mapping). Costs: O(total tokens · H · D)
//! to build; everything is plain `Vec`s.

use std::ops::Range;

use crate::rng::Rng;

/// Geometry of one scene: query heads, KV heads, head dim, block size.
#[derive(Clone, Copy, Debug)]
pub struct Geo {
    pub hq: usize,
    pub hk: usize,
    pub d: usize,
    pub bs: usize,
}

/// One sequence: all `len` tokens' q, k, v and its block table.
pub struct Seq {
    pub q: Vec<f32>,     // [len, Hq, D]
    pub k: Vec<f32>,     // [len, Hk, D]
    pub v: Vec<f32>,     // [len, Hk, D]
    pub table: Vec<u32>, // [ceil(len / bs)]
}

/// Sequences sharing one block pool of `num_blocks` blocks (3 more than they need).
pub struct Scene {
    pub geo: Geo,
    pub seqs: Vec<Seq>,
    pub num_blocks: usize,
}

/// Rows written by one `kv_write` call.
pub struct KvRows {
    pub k: Vec<f32>,     // [T, Hk, D]
    pub v: Vec<f32>,     // [T, Hk, D]
    pub slots: Vec<u32>, // [T]
}

/// Inputs of one varlen `paged_attention` call over S sequences.
pub struct Queries {
    pub q: Vec<f32>,      // [T, Hq, D]
    pub tables: Vec<u32>, // [S, max_blocks], padded with u32::MAX
    pub lens: Vec<u32>,   // [S] context lengths
    pub qsl: Vec<u32>,    // [S + 1] query start offsets
    pub max_blocks: usize,
}

impl Geo {
    pub const fn new(hq: usize, hk: usize, d: usize, bs: usize) -> Geo {
        Geo { hq, hk, d, bs }
    }
}

impl Scene {
    /// Random sequences of the given lengths, their blocks scattered over a shuffled pool.
    pub fn new(rng: &mut Rng, geo: Geo, lens: &[usize]) -> Scene {
        let need: usize = lens.iter().map(|l| l.div_ceil(geo.bs)).sum();
        let num_blocks = need + 3;
        let mut pool: Vec<u32> = (0..num_blocks as u32).collect();
        rng.shuffle(&mut pool);
        let mut taken = 0;
        let seqs = lens
            .iter()
            .map(|&len| {
                let nb = len.div_ceil(geo.bs);
                let table = pool[taken..taken + nb].to_vec();
                taken += nb;
                Seq {
                    q: rng.vec(len * geo.hq * geo.d),
                    k: rng.vec(len * geo.hk * geo.d),
                    v: rng.vec(len * geo.hk * geo.d),
                    table,
                }
            })
            .collect();
        Scene {
            geo,
            seqs,
            num_blocks,
        }
    }

    /// `[num_blocks, Hk, bs, D]`.
    pub fn cache_shape(&self) -> [usize; 4] {
        let g = self.geo;
        [self.num_blocks, g.hk, g.bs, g.d]
    }

    /// k, v and slots of tokens `range` of each listed sequence, concatenated in order.
    pub fn kv_rows(&self, parts: &[(usize, Range<usize>)]) -> KvRows {
        let g = self.geo;
        let row = g.hk * g.d;
        let mut out = KvRows {
            k: Vec::new(),
            v: Vec::new(),
            slots: Vec::new(),
        };
        for (s, r) in parts {
            let seq = &self.seqs[*s];
            out.k.extend_from_slice(&seq.k[r.start * row..r.end * row]);
            out.v.extend_from_slice(&seq.v[r.start * row..r.end * row]);
            out.slots.extend(
                r.clone()
                    .map(|p| seq.table[p / g.bs] * g.bs as u32 + (p % g.bs) as u32),
            );
        }
        out
    }

    /// Queries and metadata for `(sequence, context length, query count)` triples: the
    /// last `query count` positions of each context. Tables are padded to the longest
    /// table plus `spare` extra columns with `u32::MAX`, which a kernel must never read.
    pub fn queries(&self, parts: &[(usize, usize, usize)], spare: usize) -> Queries {
        let g = self.geo;
        let row = g.hq * g.d;
        let max_blocks = parts
            .iter()
            .map(|&(s, _, _)| self.seqs[s].table.len())
            .max()
            .unwrap_or(0)
            + spare;
        let mut out = Queries {
            q: Vec::new(),
            tables: Vec::new(),
            lens: Vec::new(),
            qsl: vec![0],
            max_blocks,
        };
        for &(s, ctx, nq) in parts {
            let seq = &self.seqs[s];
            out.q.extend_from_slice(&seq.q[(ctx - nq) * row..ctx * row]);
            let mut t = seq.table.clone();
            t.resize(max_blocks, u32::MAX);
            out.tables.extend(t);
            out.lens.push(ctx as u32);
            out.qsl.push(out.qsl.last().unwrap() + nq as u32);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_use_distinct_blocks_and_slots_map_into_them() {
        let mut rng = Rng::new(3);
        let geo = Geo::new(2, 1, 4, 5);
        let scene = Scene::new(&mut rng, geo, &[13, 1, 10]);
        let mut all: Vec<u32> = scene.seqs.iter().flat_map(|s| s.table.clone()).collect();
        assert_eq!(all.len(), 3 + 1 + 2);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 6, "a block is shared");
        assert!(all.iter().all(|&b| (b as usize) < scene.num_blocks));
        let rows = scene.kv_rows(&[(0, 11..13)]);
        let t = &scene.seqs[0].table;
        assert_eq!(rows.slots, vec![t[2] * 5 + 1, t[2] * 5 + 2]);
        assert_eq!(rows.k, scene.seqs[0].k[11 * 4..13 * 4]);
        let qs = scene.queries(&[(0, 13, 2), (1, 1, 1)], 1);
        assert_eq!(qs.max_blocks, 4);
        assert_eq!(qs.qsl, vec![0, 2, 3]);
        assert_eq!(qs.tables[4 + 1], u32::MAX);
        assert_eq!(qs.q.len(), 3 * 2 * 4);
    }
}
