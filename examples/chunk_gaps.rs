//! Inter-chunk gaps of SSE streams through a proxy, for the load-test kit: runs `STREAMS`
//! concurrent streaming requests and prints the p50/p99/max gap between consecutive chunks in
//! milliseconds as one line of JSON. usage: chunk_gaps URL STREAMS ROUNDS

use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(streams), Some(rounds)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: chunk_gaps URL STREAMS ROUNDS");
        std::process::exit(2);
    };
    let (Ok(streams), Ok(rounds)) = (streams.parse::<usize>(), rounds.parse::<usize>()) else {
        eprintln!("STREAMS and ROUNDS are numbers");
        std::process::exit(2);
    };
    let client = reqwest::Client::new();
    let body = r#"{"model":"gpt-mock","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let mut gaps: Vec<f64> = Vec::new();
    for _ in 0..rounds {
        let runs = (0..streams).map(|_| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let mut out = Vec::new();
                let Ok(mut resp) = client.post(url).body(body).send().await else {
                    return out;
                };
                let mut last = None;
                while let Ok(Some(_chunk)) = resp.chunk().await {
                    let now = Instant::now();
                    if let Some(prev) = last {
                        out.push(now.duration_since(prev).as_secs_f64() * 1000.0);
                    }
                    last = Some(now);
                }
                out
            }
        });
        for g in futures_util::future::join_all(runs).await {
            gaps.extend(g);
        }
    }
    gaps.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        gaps.get(((gaps.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "{{\"gaps\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
        gaps.len(),
        at(0.5),
        at(0.99),
        gaps.last().copied().unwrap_or(0.0)
    );
}
