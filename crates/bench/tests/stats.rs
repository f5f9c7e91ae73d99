//! The statistics on synthetic timings with hand-computed expectations, and percentile
//! properties on random samples.

use ingot_bench::stats::{
    Distribution, Outcome, RequestResult, TokenSource, gaps, percentile, summarize, tpot,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const EPS: f64 = 1e-12;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= EPS * (1.0 + b.abs())
}

#[test]
fn percentiles_interpolate_like_numpy() {
    let v = [1.0, 2.0, 3.0, 4.0];
    // numpy.percentile([1,2,3,4], [0, 50, 90, 99, 100]) = [1, 2.5, 3.7, 3.97, 4]
    for (p, want) in [
        (0.0, 1.0),
        (50.0, 2.5),
        (90.0, 3.7),
        (99.0, 3.97),
        (100.0, 4.0),
    ] {
        let got = percentile(&v, p).unwrap();
        assert!(close(got, want), "p{p}: {got} != {want}");
    }
    assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    assert_eq!(percentile(&[], 50.0), None);
}

#[test]
fn percentiles_on_random_samples_sit_between_their_order_statistics() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for trial in 0..200 {
        let n = 1 + (rng.next_u64() % 300) as usize;
        let mut v: Vec<f64> = (0..n)
            .map(|_| (rng.next_u64() % 1_000_000) as f64 / 997.0)
            .collect();
        v.sort_by(f64::total_cmp);
        let mut last = f64::NEG_INFINITY;
        for p in [0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 100.0] {
            let x = percentile(&v, p).unwrap();
            let rank = p / 100.0 * (n - 1) as f64;
            let (lo, hi) = (v[rank.floor() as usize], v[rank.ceil() as usize]);
            assert!(
                lo <= x && x <= hi,
                "trial {trial} p{p}: {x} outside [{lo}, {hi}]"
            );
            assert!(
                x >= last,
                "trial {trial}: percentiles must not decrease with p"
            );
            last = x;
        }
        assert_eq!(percentile(&v, 0.0), Some(v[0]));
        assert_eq!(percentile(&v, 100.0), Some(v[n - 1]));
    }
}

#[test]
fn distribution_of_a_small_sample() {
    // Values in seconds, reported in ms.
    let d = Distribution::of([0.004, 0.001, 0.003, 0.002], 1e3).unwrap();
    assert_eq!(d.count, 4);
    assert!(close(d.mean, 2.5));
    // Population std of 1,2,3,4: sqrt(1.25).
    assert!(close(d.std, 1.25f64.sqrt()));
    assert!(close(d.min, 1.0) && close(d.max, 4.0));
    assert!(close(d.median, 2.5) && close(d.p90, 3.7) && close(d.p99, 3.97));
    assert!(Distribution::of(std::iter::empty(), 1.0).is_none());
}

#[test]
fn tpot_and_itl_definitions() {
    // 10 tokens: first at 0.1 s, last at 1.0 s -> 9 gaps over 0.9 s.
    assert!(close(tpot(1.0, 0.1, 10).unwrap(), 0.1));
    assert_eq!(tpot(1.0, 0.1, 1), None);
    assert_eq!(tpot(1.0, 0.1, 0), None);
    let g = gaps(&[0.1, 0.15, 0.35, 0.4]);
    assert_eq!(g.len(), 3);
    for (a, b) in g.iter().zip([0.05, 0.2, 0.05]) {
        assert!((a - b).abs() < 1e-12);
    }
    assert!(gaps(&[0.3]).is_empty());
}

fn request(
    ttft: f64,
    chunk_times: &[f64],
    e2e: f64,
    prompt: usize,
    output: usize,
) -> RequestResult {
    RequestResult {
        outcome: Outcome::Ok,
        prompt_tokens: prompt,
        output_tokens: output,
        output_tokens_source: TokenSource::Usage,
        ttft_s: Some(ttft),
        itl_s: gaps(chunk_times),
        e2e_s: e2e,
        ..RequestResult::default()
    }
}

#[test]
fn a_run_summary_by_hand() {
    let results = vec![
        // chunks at 0.2, 0.3, 0.5 s; 3 tokens; TPOT = (0.6 - 0.2) / 2 = 0.2
        request(0.2, &[0.2, 0.3, 0.5], 0.6, 10, 3),
        // chunks at 0.4, 0.5; 2 tokens; TPOT = (0.8 - 0.4) / 1 = 0.4
        request(0.4, &[0.4, 0.5], 0.8, 20, 2),
        // one token: no TPOT, no ITL
        request(0.1, &[0.1], 0.1, 30, 1),
        RequestResult {
            outcome: Outcome::Error("HTTP 500".into()),
            prompt_tokens: 99,
            ..RequestResult::default()
        },
        RequestResult {
            outcome: Outcome::Aborted,
            prompt_tokens: 99,
            ..RequestResult::default()
        },
    ];
    let s = summarize(&results, 2.0);
    assert_eq!((s.completed, s.failed, s.aborted), (3, 1, 1));
    assert_eq!((s.total_input_tokens, s.total_output_tokens), (60, 6));
    assert!(close(s.request_throughput, 1.5));
    assert!(close(s.output_throughput, 3.0));
    assert!(close(s.total_token_throughput, 33.0));
    let ttft = s.ttft_ms.unwrap();
    assert_eq!(ttft.count, 3);
    assert!((ttft.mean - 700.0 / 3.0).abs() < 1e-9 && (ttft.median - 200.0).abs() < 1e-9);
    let tpot = s.tpot_ms.unwrap();
    assert_eq!(tpot.count, 2);
    assert!((tpot.mean - 300.0).abs() < 1e-9, "{tpot:?}"); // (200 + 400) / 2
    let itl = s.itl_ms.unwrap();
    // Pooled gaps: 100, 200 (first request), 100 (second).
    assert_eq!(itl.count, 3);
    assert!(
        (itl.mean - 400.0 / 3.0).abs() < 1e-9
            && (itl.median - 100.0).abs() < 1e-9
            && (itl.max - 200.0).abs() < 1e-9
    );
    let e2e = s.e2e_ms.unwrap();
    assert!((e2e.mean - 500.0).abs() < 1e-9 && (e2e.median - 600.0).abs() < 1e-9);
}

#[test]
fn an_empty_run_has_no_distributions() {
    let s = summarize(&[], 0.0);
    assert_eq!(s.completed, 0);
    assert_eq!(s.request_throughput, 0.0);
    assert!(s.ttft_ms.is_none() && s.tpot_ms.is_none() && s.itl_ms.is_none() && s.e2e_ms.is_none());
}
