use super::*;

fn principal(id: &str, owner: Option<&str>) -> Principal {
    Principal::opaque_for_tests(id, owner)
}

fn budget(yaml: &str) -> Budget {
    serde_yaml::from_str(yaml).unwrap()
}

fn at() -> At<'static> {
    At {
        route: "/openai",
        provider: "openai",
        mcp_server: None,
        endpoint: None,
        source: None,
    }
}

fn usage(input: u64, output: u64, cache_read: u64) -> Usage {
    Usage {
        input,
        output,
        cache_read,
        cache_write: 0,
    }
}

/// 2026-01-31T23:59:00Z and a minute later.
const JAN_31_LATE: u64 = 1_769_903_940;
const FEB_1: u64 = 1_769_904_000;

#[test]
fn months_and_days_end_at_utc_boundaries() {
    let (jan, end) = period(Period::Month, None, JAN_31_LATE);
    assert_eq!(end, FEB_1);
    let (feb, _) = period(Period::Month, None, FEB_1);
    assert_eq!(feb, jan + 1);
    let (d, end) = period(Period::Day, None, JAN_31_LATE);
    assert_eq!((d + 1) * 86_400, end);
    let (_, end) = period(Period::Hours, Some(6), FEB_1 + 3600);
    assert_eq!(end, FEB_1 + 6 * 3600);
    // December rolls into the next year.
    let dec_31 = 1_798_761_599; // 2026-12-31T23:59:59Z
    assert_eq!(period(Period::Month, None, dec_31).1, dec_31 + 1);
}

#[test]
fn a_used_up_budget_refuses_until_its_period_ends() {
    let registry = Registry::default();
    let budgets = registry.build(
        &[budget(
            "{name: team, owner: team-a, period: month, usd: 1.0, warn_at: 0.5}",
        )],
        Prices::new(&[]),
    );
    let alice = principal("alice", Some("team-a"));
    let charge = budgets.check(at(), &alice, JAN_31_LATE).unwrap();
    // gpt-4o: $2.50 per million input, $10 per million output → 100k in + 60k out = $0.85.
    let w = budgets.charge(
        &charge,
        ("openai", ProviderKind::OpenAi),
        Some("gpt-4o-2024-08-06"),
        &usage(100_000, 60_000, 0),
        &alice,
        JAN_31_LATE,
    );
    assert_eq!(w.len(), 1, "crossed half of the budget");
    assert!((w[0].share - 0.85).abs() < 1e-9, "{w:?}");
    let charge = budgets.check(at(), &alice, JAN_31_LATE).unwrap();
    let w = budgets.charge(
        &charge,
        ("openai", ProviderKind::OpenAi),
        Some("gpt-4o"),
        &usage(100_000, 0, 0),
        &alice,
        JAN_31_LATE,
    );
    assert!(w.is_empty(), "warned once per period");
    let (name, exceeded) = budgets.check(at(), &alice, JAN_31_LATE).unwrap_err();
    assert_eq!((name.as_str(), exceeded.resets_at), ("team", FEB_1));
    // Somebody else's requests are not this budget's.
    assert!(budgets
        .check(at(), &principal("bob", None), JAN_31_LATE)
        .is_ok());
    // A new month: spent nothing yet.
    let charge = budgets.check(at(), &alice, FEB_1).unwrap();
    assert!(!charge.is_empty());
    assert_eq!(registry.spent("team", FEB_1), Some((0, 0.0)));
}

#[test]
fn token_budgets_per_principal_and_cached_prices() {
    let registry = Registry::default();
    let budgets = registry.build(
        &[budget(
            "{name: per-user, per: principal, period: day, tokens: 1000}",
        )],
        Prices::new(&[]),
    );
    let (a, b) = (principal("a", None), principal("b", None));
    let now = FEB_1;
    let charge = budgets.check(at(), &a, now).unwrap();
    budgets.charge(
        &charge,
        ("openai", ProviderKind::OpenAi),
        Some("gpt-4o-mini"),
        &usage(900, 100, 800),
        &a,
        now,
    );
    assert!(budgets.check(at(), &a, now).is_err());
    assert!(budgets.check(at(), &b, now).is_ok());
    // Cached input is priced as such: OpenAI counts it inside the input, Anthropic apart.
    let prices = Prices::new(&[]);
    let openai = prices.cost_micro_usd(
        "openai",
        ProviderKind::OpenAi,
        Some("gpt-4o"),
        &usage(1_000_000, 0, 1_000_000),
    );
    assert_eq!(openai, 1_250_000);
    let anthropic = prices.cost_micro_usd(
        "anthropic",
        ProviderKind::Anthropic,
        Some("claude-sonnet-4-20250514"),
        &usage(1_000_000, 1_000_000, 1_000_000),
    );
    assert_eq!(anthropic, 3_000_000 + 15_000_000 + 300_000);
    // A configured price wins over the shipped one, for its provider only.
    let custom = Prices::new(&[serde_yaml::from_str(
        "{model: gpt-4o, provider: azure, input: 1, output: 1}",
    )
    .unwrap()]);
    let u = usage(1_000_000, 0, 0);
    assert_eq!(
        custom.cost_micro_usd("azure", ProviderKind::OpenAi, Some("gpt-4o"), &u),
        1_000_000
    );
    assert_eq!(
        custom.cost_micro_usd("openai", ProviderKind::OpenAi, Some("gpt-4o"), &u),
        2_500_000
    );
    assert_eq!(
        custom.cost_micro_usd("openai", ProviderKind::OpenAi, Some("llama"), &u),
        0
    );
}

#[test]
fn spend_survives_a_restart_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(FILE);
    let spec = budget("{name: team, per: owner, usd: 10}");
    let alice = principal("alice", Some("team-a"));
    {
        let registry = Registry::default();
        let budgets = registry.build(std::slice::from_ref(&spec), Prices::new(&[]));
        let charge = budgets.check(at(), &alice, FEB_1).unwrap();
        budgets.charge(
            &charge,
            ("openai", ProviderKind::OpenAi),
            Some("gpt-4o"),
            &usage(0, 1_000_000, 0),
            &alice,
            FEB_1,
        );
        registry.save(&file).unwrap();
    }
    let registry = Registry::default();
    registry.load(&file);
    let _budgets = registry.build(&[spec], Prices::new(&[]));
    assert_eq!(registry.spent("team", FEB_1 + 60), Some((1_000_000, 10.0)));
}

#[test]
fn a_rolling_window_counts_the_spend_sliding_out_of_it() {
    let registry = Registry::default();
    let budgets = registry.build(
        &[budget(
            "{name: rolling, period: hours, window_hours: 10, tokens: 1000}",
        )],
        Prices::new(&[]),
    );
    let a = principal("a", None);
    let w = 36_000;
    let window = FEB_1 - FEB_1 % w + 10 * w;
    let spend = |tokens, now| {
        let charge = budgets.check(at(), &a, now).unwrap();
        budgets.charge(
            &charge,
            ("openai", ProviderKind::OpenAi),
            Some("gpt-4o"),
            &usage(tokens, 0, 0),
            &a,
            now,
        );
    };
    // 800 tokens late in one window; an hour into the next, 90 % of them still count.
    spend(800, window - 3600);
    let now = window + 3600;
    assert_eq!(registry.spent("rolling", now).map(|s| s.0), Some(720));
    spend(300, now);
    let (_, refused) = budgets.check(at(), &a, now).unwrap_err();
    // 720 + 300 ≥ 1000 until enough of the 800 slid out: 800 × (1 − t/w) < 700 after 1.25 h.
    assert_eq!(refused.resets_at, window + 4500 + 1);
    assert!(budgets.check(at(), &a, window + 4400).is_err());
    assert!(budgets.check(at(), &a, window + 4600).is_ok());
}

#[test]
fn spend_files_of_the_earlier_shape_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(FILE);
    let index = period(Period::Day, None, FEB_1).0;
    std::fs::write(
        &file,
        format!(r#"{{"team": {{"*": [{index}, 1500, 2000000]}}}}"#),
    )
    .unwrap();
    let registry = Registry::default();
    registry.load(&file);
    let _budgets = registry.build(
        &[budget("{name: team, period: day, tokens: 10000}")],
        Prices::new(&[]),
    );
    assert_eq!(registry.spent("team", FEB_1), Some((1500, 2.0)));
}
