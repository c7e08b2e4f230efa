use super::gcra::Gcra;
use super::*;

const S: u64 = 1_000_000_000;

fn principal(id: &str, owner: Option<&str>) -> Principal {
    Principal::opaque_for_tests(id, owner)
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn at(route: &str) -> At<'_> {
    At {
        route,
        provider: "openai",
        mcp_server: None,
        endpoint: None,
        source: None,
    }
}

fn limit(yaml: &str) -> Limit {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn a_rate_admits_its_burst_then_refills_smoothly() {
    let g = Gcra::new(10, 60 * S);
    let now = 1000 * S;
    for _ in 0..10 {
        g.take(now).unwrap();
    }
    let wait = g.take(now).unwrap_err();
    assert_eq!(wait, 6 * S, "one unit every 6 s");
    assert_eq!(g.remaining(now), 0);
    assert!(g.take(now + 6 * S - 1).is_err());
    g.take(now + 6 * S).unwrap();
    assert_eq!(g.reset_ns(now + 6 * S), 60 * S);
}

#[test]
fn token_debt_is_paid_off_before_the_next_request() {
    let g = Gcra::new(1000, 60 * S);
    let now = 5 * S;
    g.check(now).unwrap();
    g.debit(3000, now); // three minutes' worth reported after the fact
    let wait = g.check(now).unwrap_err();
    assert!(wait > 119 * S && wait <= 120 * S + 60_000_000, "{wait}");
    g.credit(2500, now); // the estimate was too high
    g.check(now).unwrap();
    assert_eq!(g.remaining(now), 500);
}

#[test]
fn limits_match_their_selectors_and_count_per_holder() {
    let registry = Registry::default();
    let limits = registry.build(&[
        limit("{name: per-user, route: /openai, per: principal, requests_per_minute: 2}"),
        limit("{name: team, owner: team-a, concurrent: 1}"),
    ]);
    let (alice, bob) = (principal("alice", Some("team-a")), principal("bob", None));
    let now = 100 * S;
    let g1 = block(limits.admit(at("/openai"), &alice, now)).unwrap();
    // team-a has one request in flight: alice's second waits for it.
    let (name, refused) = block(limits.admit(at("/openai"), &alice, now)).unwrap_err();
    assert_eq!((&*name, refused.dimension), ("team", Dimension::Concurrent));
    drop(g1);
    let _g2 = block(limits.admit(at("/openai"), &alice, now)).unwrap();
    // The refusal by `team` gave back what `per-user` took: alice used 2, not 3.
    let (name, refused) = block(limits.admit(at("/anthropic"), &alice, now)).unwrap_err();
    assert_eq!((&*name, refused.dimension), ("team", Dimension::Concurrent));
    // bob has counters of his own and no owner.
    block(limits.admit(at("/openai"), &bob, now)).unwrap();
    block(limits.admit(at("/openai"), &bob, now)).unwrap();
    let (name, refused) = block(limits.admit(at("/openai"), &bob, now)).unwrap_err();
    assert_eq!(
        (&*name, refused.dimension),
        ("per-user", Dimension::Requests)
    );
    assert_eq!((refused.limit, refused.period_s), (2, 60));
    assert_eq!(refused.retry_after_ms, 30_000);
    // Another route is not limited by per-user.
    block(limits.admit(at("/anthropic"), &bob, now)).unwrap();
}

#[test]
fn a_refusal_by_a_later_limit_gives_back_what_earlier_ones_took() {
    let registry = Registry::default();
    let limits = registry.build(&[
        limit("{name: a, requests_per_minute: 2}"),
        limit("{name: b, token: t1, requests_per_minute: 1}"),
    ]);
    let t1 = principal("t1", None);
    let now = 100 * S;
    block(limits.admit(at("/x"), &t1, now)).unwrap();
    assert_eq!(
        &*block(limits.admit(at("/x"), &t1, now)).unwrap_err().0,
        "b"
    );
    // `a` still has one left for somebody else.
    block(limits.admit(at("/x"), &principal("t2", None), now)).unwrap();
}

#[test]
fn tokens_are_reserved_then_settled_to_the_usage() {
    let registry = Registry::default();
    let limits = registry.build(&[limit("{name: tpm, tokens_per_minute: 1000}")]);
    let p = principal("p", None);
    let now = 10 * S;
    let mut g = block(limits.admit(at("/x"), &p, now)).unwrap();
    assert!(g.counts_tokens());
    g.reserve(900, now);
    block(limits.admit(at("/x"), &p, now)).unwrap();
    g.settle(1200, now);
    let (_, refused) = block(limits.admit(at("/x"), &p, now)).unwrap_err();
    assert_eq!(refused.dimension, Dimension::Tokens);
    assert_eq!(refused.limit, 1000);
    // 200 tokens of debt, one token every 60 ms: 201 × 60 ms.
    assert_eq!(refused.retry_after_ms, 12_060);
    block(limits.admit(at("/x"), &p, now + 13 * S)).unwrap();
}

#[test]
fn an_unchanged_limit_keeps_its_counters_across_reloads() {
    let registry = Registry::default();
    let spec = limit("{name: one, requests_per_minute: 1}");
    let p = principal("p", None);
    let now = 100 * S;
    let first = registry.build(std::slice::from_ref(&spec));
    block(first.admit(at("/x"), &p, now)).unwrap();
    let again = registry.build(&[spec]);
    assert!(block(again.admit(at("/x"), &p, now)).is_err());
    let changed = registry.build(&[limit("{name: one, requests_per_minute: 2}")]);
    assert!(block(changed.admit(at("/x"), &p, now)).is_ok());
}

/// A limit naming an MCP server applies to that server's requests only, and MCP requests
/// meet no other limit (a global cap on provider routes does not reach them).
#[test]
fn mcp_limits_select_their_server_only() {
    let registry = Registry::default();
    let limits = registry.build(&[
        limit("{name: tools, mcp_server: tools, requests_per_minute: 1}"),
        limit("{name: everything, requests_per_minute: 1}"),
    ]);
    let p = principal("p", None);
    let now = 100 * S;
    let tools = At {
        route: "",
        provider: "",
        mcp_server: Some("tools"),
        endpoint: None,
        source: None,
    };
    let other = At {
        mcp_server: Some("other"),
        ..tools
    };
    block(limits.admit(tools, &p, now)).unwrap();
    let (name, _) = block(limits.admit(tools, &p, now)).unwrap_err();
    assert_eq!(&*name, "tools");
    block(limits.admit(other, &p, now)).unwrap();
    block(limits.admit(other, &p, now)).unwrap();
    block(limits.admit(at("/openai"), &p, now)).unwrap();
    let (name, _) = block(limits.admit(at("/openai"), &p, now)).unwrap_err();
    assert_eq!(&*name, "everything");
}

/// `per: source` keeps one set per client address (an IPv6 client's /64), and a limit naming
/// one of Sluice's own endpoints applies there only, to anonymous callers.
#[test]
fn per_source_counts_each_client_address_and_endpoints_are_their_own_selector() {
    use spec::Endpoint;
    let registry = Registry::default();
    let limits = registry.build(&[
        limit("{ name: token-endpoint, endpoint: issuer, per: source, requests_per_minute: 2 }"),
        limit("{ name: per-client, route: /openai, per: source, requests_per_minute: 1 }"),
    ]);
    let anonymous = crate::auth::Principal::anonymous();
    let now = 100 * S;
    let issuer = |ip: &str| At {
        route: "",
        provider: "",
        mcp_server: None,
        endpoint: Some(Endpoint::Issuer),
        source: Some(ip.parse().unwrap()),
    };
    for _ in 0..2 {
        block(limits.admit(issuer("203.0.113.7"), &anonymous, now)).unwrap();
    }
    let (name, _) = block(limits.admit(issuer("203.0.113.7"), &anonymous, now)).unwrap_err();
    assert_eq!(&*name, "token-endpoint");
    // Another address has its own allowance; one IPv6 host's /64 shares one.
    block(limits.admit(issuer("203.0.113.8"), &anonymous, now)).unwrap();
    block(limits.admit(issuer("2001:db8::1"), &anonymous, now)).unwrap();
    block(limits.admit(issuer("2001:db8::2"), &anonymous, now)).unwrap();
    assert!(block(limits.admit(issuer("2001:db8::3"), &anonymous, now)).is_err());
    // The vault's pages are another endpoint: no limit names them.
    let vault = At {
        endpoint: Some(Endpoint::Vault),
        ..issuer("203.0.113.7")
    };
    block(limits.admit(vault, &anonymous, now)).unwrap();
    // On a route, per source too; the endpoint's limit does not apply there.
    let p = principal("p", None);
    let on_route = |ip: &str| At {
        source: Some(ip.parse().unwrap()),
        ..at("/openai")
    };
    block(limits.admit(on_route("203.0.113.7"), &p, now)).unwrap();
    let (name, _) = block(limits.admit(on_route("203.0.113.7"), &p, now)).unwrap_err();
    assert_eq!(&*name, "per-client");
    block(limits.admit(on_route("198.51.100.1"), &p, now)).unwrap();
}
