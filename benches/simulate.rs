//! Criterion benchmark of `simulate` end to end on the committed population (2,476 synthetic
//! adults, ~35 resources each, as a gzipped Bulk Data NDJSON folder): grouping by patient,
//! every patient through the live pipeline on all cores, and the report written. Reported
//! as patients per second (`cargo bench --bench simulate`); figures are quoted in
//! BENCHMARKS.md, not asserted.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use leg_cramp_cds::cli::SimulateArgs;
use std::path::Path;
use std::time::Duration;

// Same allocator as the binary, so the figures match what the command does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PATIENTS: u64 = 2476;

fn simulate(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let args = SimulateArgs {
        inputs: vec![root.join("population/bulk")],
        now: Some("2026-12-01T12:00:00Z".parse().unwrap()),
        out: out.path().to_path_buf(),
        per_patient: false,
        responses: false,
        threads: None,
        cards: root.join("cards"),
    };
    let mut group = c.benchmark_group("simulate");
    group.throughput(Throughput::Elements(PATIENTS)).sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("committed population, Bulk NDJSON, all cores", |b| {
        b.iter(|| {
            let summary = leg_cramp_cds::commands::simulate::run(&args).unwrap();
            assert_eq!(summary.evaluated, PATIENTS);
        })
    });
    group.finish();
}

criterion_group!(benches, simulate);
criterion_main!(benches);
