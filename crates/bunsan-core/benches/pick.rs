//! Cost of one `Selector::pick` per algorithm and pool size, and of `Selector::build`.
//!
//! `cargo bench -p bunsan-core --bench pick`
//! Bench ids: `pick/<algorithm>/<servers>` and `build/<algorithm>/1000`.

use std::hint::black_box;
use std::time::Duration;

use bunsan_core::{Algorithm, Candidate, PickContext, Selector, ServerState};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

struct Server {
    id: String,
    capacity: u32,
    load: f64,
    in_flight: u64,
    ewma: f64,
}

impl Candidate for Server {
    fn id(&self) -> &str {
        &self.id
    }
    fn state(&self) -> ServerState {
        ServerState::Ready
    }
    fn capacity(&self) -> u32 {
        self.capacity
    }
    fn load(&self) -> f64 {
        self.load
    }
    fn in_flight(&self) -> u64 {
        self.in_flight
    }
    fn latency_ewma(&self) -> f64 {
        self.ewma
    }
}

/// `n` ready servers with random capacities (1..=16), loads, in-flight counts and EWMAs.
fn pool(n: usize) -> Vec<Server> {
    let mut rng = fastrand::Rng::with_seed(0xb05a);
    (0..n)
        .map(|i| Server {
            id: format!("10.0.{}.{}:8080", i / 256, i % 256),
            capacity: rng.u32(1..=16),
            load: rng.f64() * 100.0,
            in_flight: rng.u64(0..100),
            ewma: 0.001 + rng.f64() * 0.1,
        })
        .collect()
}

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for n in [10, 1_000, 10_000] {
        let servers = pool(n);
        for algorithm in Algorithm::ALL {
            let selector = Selector::build(algorithm, &servers);
            let mut rng = fastrand::Rng::with_seed(1);
            group.bench_function(BenchmarkId::new(algorithm.as_str(), n), |b| {
                b.iter(|| {
                    // Every algorithm gets a fresh key; only Maglev reads it.
                    let key = rng.u64(..);
                    let mut ctx = PickContext::new(&mut rng).with_key(Some(key));
                    black_box(selector.pick(black_box(&servers), &mut ctx))
                })
            });
        }
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    // Maglev and round-robin builds take milliseconds; fewer samples keep the run short.
    group.sample_size(20);
    let servers = pool(1_000);
    for algorithm in Algorithm::ALL {
        group.bench_function(BenchmarkId::new(algorithm.as_str(), servers.len()), |b| {
            b.iter(|| black_box(Selector::build(algorithm, black_box(&servers))))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = pick, build
}
criterion_main!(benches);
