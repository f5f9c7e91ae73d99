//! KV cache groups with sliding windows: blocks leave a sliding group exactly when they fall
//! out of its window, nothing a request still reads is ever freed, pools never leak, and a
//! prefix hit is cut back to what every group still holds.

use ingot_kv_cache::{BlockId, KvCacheBlocks, KvCacheManager, KvGroupSpec};
use proptest::prelude::*;

const BS: usize = 4;

fn full(num_blocks: usize) -> KvGroupSpec {
    KvGroupSpec {
        sliding_window: None,
        num_blocks,
    }
}

fn sliding(w: usize, num_blocks: usize) -> KvGroupSpec {
    KvGroupSpec {
        sliding_window: Some(w),
        num_blocks,
    }
}

/// Every group's table of `blocks` holds NULL exactly before the window of the token at
/// `num_computed`, and real blocks from there to its end.
fn check_window(m: &KvCacheManager, blocks: &KvCacheBlocks, num_computed: usize) {
    for g in 0..m.num_groups() {
        let skip = m.group_spec(g).num_skipped(num_computed, BS);
        for (j, b) in blocks.table(g).iter().enumerate() {
            assert_eq!(
                b.is_null(),
                j < skip,
                "group {g} entry {j} with {num_computed} computed: {b:?}"
            );
        }
    }
}

#[test]
fn decode_frees_each_block_as_it_leaves_the_window() {
    let w = 8;
    let mut m = KvCacheManager::with_groups(&[full(32), sliding(w, 32)], BS, false);
    let (mut a, _) = m.admit(&[1, 2, 3], 0);
    assert!(m.allocate_slots(&mut a, 0, 3));
    let mut computed = 3;
    while computed < 100 {
        assert!(m.allocate_slots(&mut a, computed, computed + 1));
        check_window(&m, &a, computed);
        let held = a.table(1).iter().filter(|b| !b.is_null()).count();
        assert!(
            held <= w.div_ceil(BS) + 1,
            "{held} blocks held at {computed}"
        );
        assert_eq!(m.group_pool(1).num_free(), 32 - held);
        assert_eq!(m.group_pool(0).num_free(), 32 - (computed + 1).div_ceil(BS));
        computed += 1;
    }
    m.free(a);
    assert_eq!(m.group_pool(0).num_free(), 32);
    assert_eq!(m.group_pool(1).num_free(), 32);
}

#[test]
fn a_long_chunk_allocates_only_what_it_writes() {
    let mut m = KvCacheManager::with_groups(&[full(64), sliding(8, 64)], BS, false);
    let prompt: Vec<u32> = (0..100).collect();
    let (mut a, _) = m.admit(&prompt, 0);
    // Chunks of 20: each holds the 7 positions before it and itself.
    for c in (0..100).step_by(20) {
        assert!(m.allocate_slots(&mut a, c, c + 20));
        check_window(&m, &a, c);
        let held = a.table(1).iter().filter(|b| !b.is_null()).count();
        assert!(held <= (8 - 1 + 20usize).div_ceil(BS) + 1);
    }
    m.free(a);
    assert_eq!(m.group_pool(1).num_free(), 64);
}

#[test]
fn a_prefix_hit_is_cut_back_to_the_window_still_cached() {
    // W = 5, blocks of 4: a hit of L blocks needs block L - 1 in the sliding group.
    let mut m = KvCacheManager::with_groups(&[full(32), sliding(5, 7)], BS, true);
    let a_prompt: Vec<u32> = (0..25).collect();
    let (mut a, hit) = m.admit(&a_prompt, 0);
    assert_eq!(hit, 0);
    assert!(m.allocate_slots(&mut a, 0, 25));
    m.cache_full_blocks(&mut a, &a_prompt, 25, 0);
    let a_sliding: Vec<BlockId> = a.table(1).to_vec();
    m.free_out_of_window(&mut a, 25);
    check_window(&m, &a, 25);
    let a_full: Vec<BlockId> = a.table(0).to_vec();
    m.free(a);

    // E hits A's first 5 blocks: in the sliding group only block 4 is taken.
    let (e, hit) = m.admit(&a_prompt[..21], 0);
    assert_eq!(hit, 20);
    check_window(&m, &e, 20);
    assert_eq!(e.table(0), &a_full[..5]);
    assert_eq!(e.table(1)[4], a_sliding[4]);

    // C fills the rest of the sliding pool, evicting A's block 5 there (not in group 0).
    let c_prompt: Vec<u32> = (1000..1024).collect();
    let (mut c, _) = m.admit(&c_prompt, 0);
    assert!(m.allocate_slots(&mut c, 0, 24));
    assert_eq!(m.group_pool(1).num_free(), 0);

    // B repeats A's 25 tokens: group 0 holds 6 blocks of them, but the sliding group lacks
    // block 5, so the hit stops after block 4 (whose window block 4 is cached).
    let b_prompt: Vec<u32> = (0..25).chain(200..205).collect();
    let (mut b, hit) = m.admit(&b_prompt, 0);
    assert_eq!(hit, 20, "cut back from 24 to 20");
    check_window(&m, &b, 20);
    assert_eq!(m.group_pool(1).ref_cnt(a_sliding[4]), 2);
    assert!(
        !m.allocate_slots(&mut b, 20, 30),
        "the sliding pool is full"
    );
    m.free(c);
    assert!(m.allocate_slots(&mut b, 20, 30));
    check_window(&m, &b, 20);
    m.free(e);
    m.free(b);
    assert_eq!(m.group_pool(0).num_free(), 32);
    assert_eq!(m.group_pool(1).num_free(), 7);
    let s = m.stats();
    assert_eq!((s.prefix_cache_hits, s.num_sliding_blocks), (40, 7));
}

#[test]
fn a_hit_shorter_than_the_window_needs_every_block() {
    let mut m = KvCacheManager::with_groups(&[full(16), sliding(16, 16)], BS, true);
    let prompt: Vec<u32> = (0..9).collect();
    let (mut a, _) = m.admit(&prompt, 0);
    assert!(m.allocate_slots(&mut a, 0, 9));
    m.cache_full_blocks(&mut a, &prompt, 9, 0);
    m.free(a);
    let (b, hit) = m.admit(&prompt, 0);
    assert_eq!(hit, 8);
    assert!(b.table(1).iter().all(|id| !id.is_null()));
    m.free(b);
}

/// One simulated request: its tokens, how many are computed, its blocks.
struct Live {
    tokens: Vec<u32>,
    computed: usize,
    blocks: Option<KvCacheBlocks>,
}

proptest! {
    /// Random requests sharing prefixes run in random chunks over a full group and two
    /// sliding groups, with preemption when a pool runs dry. A simulated cache records which
    /// (token, position) each slot holds: every position a chunk reads must hold that
    /// request's own token (a block freed and handed to another request would not).
    #[test]
    fn groups_never_free_what_is_read_and_never_leak(
        reqs in prop::collection::vec((0u32..3, 5usize..60), 1..6),
        chunks in prop::collection::vec(1usize..14, 200),
        caching in any::<bool>(),
    ) {
        let specs = [full(40), sliding(6, 14), sliding(9, 16)];
        let mut m = KvCacheManager::with_groups(&specs, BS, caching);
        // [group][block * BS + offset] -> (token, position) written there.
        let mut slots: Vec<Vec<Option<(u32, usize)>>> =
            specs.iter().map(|s| vec![None; s.num_blocks * BS]).collect();
        let mut live: Vec<Live> = reqs
            .iter()
            .map(|&(family, len)| Live {
                tokens: (0..len as u32).map(|t| if t < 12 { family * 100 + t } else { t * 7 + family }).collect(),
                computed: 0,
                blocks: None,
            })
            .collect();
        for (step, &n) in chunks.iter().enumerate() {
            let i = step % live.len();
            let r = &mut live[i];
            if r.computed == r.tokens.len() {
                continue;
            }
            if r.blocks.is_none() {
                let (blocks, hit) = m.admit(&r.tokens, 0);
                prop_assert!(hit < r.tokens.len());
                r.blocks = Some(blocks);
                r.computed = hit;
            }
            let c = r.computed;
            let n = n.min(r.tokens.len() - c);
            let blocks = r.blocks.as_mut().unwrap();
            if !m.allocate_slots(blocks, c, c + n) {
                // Preempted: recomputed from scratch later.
                m.free(r.blocks.take().unwrap());
                r.computed = 0;
                continue;
            }
            check_window(&m, blocks, c);
            for (g, spec) in specs.iter().enumerate() {
                let table = blocks.table(g);
                let slot = |p: usize| table[p / BS].0 as usize * BS + p % BS;
                let held = table.iter().filter(|b| !b.is_null()).count();
                if let Some(w) = spec.sliding_window {
                    prop_assert!(held <= (w - 1 + n).div_ceil(BS) + 1);
                }
                // The chunk writes its tokens, then its queries read their windows.
                for p in c..c + n {
                    slots[g][slot(p)] = Some((r.tokens[p], p));
                }
                let first = spec.sliding_window.map_or(0, |w| (c + 1).saturating_sub(w));
                for p in first..c + n {
                    prop_assert!(!table[p / BS].is_null(), "group {} reads freed position {}", g, p);
                    prop_assert_eq!(slots[g][slot(p)], Some((r.tokens[p], p)), "group {} position {}", g, p);
                }
            }
            r.computed = c + n;
            m.cache_full_blocks(blocks, &r.tokens, r.computed, 0);
            m.free_out_of_window(blocks, r.computed);
            check_window(&m, blocks, r.computed);
            if r.computed == r.tokens.len() {
                m.free(r.blocks.take().unwrap());
            }
            // Every reference is held by exactly one live table entry.
            for (g, spec) in specs.iter().enumerate() {
                let pool = m.group_pool(g);
                let mut refs = vec![0u32; spec.num_blocks];
                for b in live.iter().filter_map(|r| r.blocks.as_ref()) {
                    for id in b.table(g).iter().filter(|id| !id.is_null()) {
                        refs[id.0 as usize] += 1;
                    }
                }
                let used = refs.iter().filter(|&&r| r > 0).count();
                for (id, &r) in refs.iter().enumerate() {
                    prop_assert_eq!(pool.ref_cnt(BlockId(id as u32)), r);
                }
                prop_assert_eq!(used + pool.num_free(), spec.num_blocks);
            }
        }
        for r in live {
            if let Some(b) = r.blocks {
                m.free(b);
            }
        }
        for (g, spec) in specs.iter().enumerate() {
            prop_assert_eq!(m.group_pool(g).num_free(), spec.num_blocks);
        }
    }
}
