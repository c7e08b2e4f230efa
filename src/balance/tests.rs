use super::*;
use proptest::prelude::*;
use std::time::Duration;

fn pool(weights: &[(u32, bool)]) -> KeyPool {
    KeyPool::build(
        weights
            .iter()
            .map(|(weight, enabled)| Member {
                weight: *weight,
                enabled: *enabled,
                health: Arc::default(),
                id_hash: 0,
            })
            .collect(),
    )
}

#[test]
fn picks_are_smooth() {
    let p = pool(&[(3, true), (1, true)]);
    let picks: Vec<usize> = (0..8).map(|_| p.pick(0, None).unwrap()).collect();
    assert_eq!(picks, vec![0, 0, 1, 0, 0, 0, 1, 0]);
}

#[test]
fn drained_and_disabled_keys_are_never_picked() {
    let p = pool(&[(0, true), (5, false), (2, true)]);
    for _ in 0..100 {
        assert_eq!(p.pick(0, None), Some(2));
    }
    assert!(pool(&[(0, true), (1, false)]).pick(0, None).is_none());
}

#[test]
fn unhealthy_keys_are_skipped_until_their_time_is_up() {
    let p = pool(&[(1, true), (1, true)]);
    p.members()[0]
        .health
        .block(KeyState::CoolingDown, 1_000, Duration::from_secs(2));
    for _ in 0..10 {
        assert_eq!(p.pick(1_500, None), Some(1));
    }
    assert_eq!(p.members()[0].health.state(1_500), KeyState::CoolingDown);
    p.members()[1]
        .health
        .block(KeyState::Quarantined, 1_000, Duration::from_secs(60));
    assert_eq!(p.pick(1_500, None), None);
    assert_eq!(p.pick(3_000, None), Some(0));
}

#[test]
fn exclude_moves_to_another_key() {
    let p = pool(&[(1, true), (1, true)]);
    for _ in 0..10 {
        assert_eq!(p.pick(0, Some(0)), Some(1));
    }
    assert_eq!(pool(&[(1, true)]).pick(0, Some(0)), None);
}

#[test]
fn huge_weights_keep_a_bounded_table_and_every_key() {
    let p = pool(&[(1_000_000, true), (1, true), (999_999, true)]);
    assert!(p.table.len() as u64 <= MAX_TABLE + 3);
    assert!(p.table.contains(&1));
}

proptest! {
    #[test]
    fn picks_follow_weights(weights in proptest::collection::vec((0u32..20, any::<bool>()), 1..8)) {
        let p = pool(&weights);
        let serving: u64 = weights.iter().filter(|(_, e)| *e).map(|(w, _)| u64::from(*w)).sum();
        let mut counts = vec![0u64; weights.len()];
        let picks = 10_000u64;
        for _ in 0..picks {
            match p.pick(0, None) {
                Some(i) => counts[i] += 1,
                None => prop_assert_eq!(serving, 0),
            }
        }
        for (i, (w, enabled)) in weights.iter().enumerate() {
            if !*enabled || *w == 0 {
                prop_assert_eq!(counts[i], 0, "key {} must never be picked", i);
            } else {
                let share = counts[i] as f64 / picks as f64;
                let expected = f64::from(*w) / serving as f64;
                prop_assert!((share - expected).abs() <= 0.03, "key {}: share {} expected {}", i, share, expected);
            }
        }
    }
}

fn keyed_pool(weights: &[u32]) -> KeyPool {
    KeyPool::build(
        weights
            .iter()
            .enumerate()
            .map(|(i, weight)| Member {
                weight: *weight,
                enabled: true,
                health: Arc::default(),
                id_hash: hash_str(&format!("key-{i}")),
            })
            .collect(),
    )
}

#[test]
fn affinity_spreads_principals_by_weight_and_keeps_each_on_its_key() {
    let weights = [4, 3, 2, 1];
    let p = keyed_pool(&weights);
    let principals: Vec<u64> = (0..1000).map(|i| hash_str(&format!("user-{i}"))).collect();
    let mut count = [0usize; 4];
    let chosen: Vec<usize> = principals
        .iter()
        .map(|&h| p.pick_for(h, 0, None).unwrap())
        .collect();
    for &k in &chosen {
        count[k] += 1;
    }
    for (k, w) in weights.iter().enumerate() {
        let share = count[k] as f64 / 1000.0;
        let want = f64::from(*w) / 10.0;
        assert!(
            (share - want).abs() <= 0.05,
            "key {k}: {share} of picks for {want}: {count:?}"
        );
    }
    // The same answer every time, and from another pool built from the same keys (a replica).
    let again = keyed_pool(&weights);
    for (&h, &k) in principals.iter().zip(&chosen) {
        assert_eq!(p.pick_for(h, 5, None), Some(k));
        assert_eq!(again.pick_for(h, 5, None), Some(k));
    }
    // Benching key 1 moves exactly its principals; the others stay where they were.
    p.members()[1]
        .health
        .block(KeyState::Quarantined, 0, Duration::from_secs(60));
    let mut moved = 0;
    for (&h, &k) in principals.iter().zip(&chosen) {
        let now = p.pick_for(h, 1, None).unwrap();
        if k == 1 {
            assert_ne!(now, 1);
            moved += 1;
        } else {
            assert_eq!(now, k);
        }
    }
    assert_eq!(moved, count[1]);
    // A retry excludes the key that failed and takes the principal's next one.
    let h = principals[0];
    let first = p.pick_for(h, 1, None).unwrap();
    let second = p.pick_for(h, 1, Some(first)).unwrap();
    assert_ne!(first, second);
}
