//! `simulate INPUT… [--now T] [--out DIR] [--per-patient]`: a whole population through the
//! live pipeline, on every core, into the alert-burden report (`report.json`, `report.html`).
//! Inputs are FHIR Bundles (one patient each, `.json` or `.json.gz`, or a folder of them) and
//! FHIR Bulk Data export folders (NDJSON, grouped by patient in bounded passes: [`bulk`]).
//! A patient that cannot be read or evaluated is reported, not fatal.

mod bulk;
mod calls;
mod record;
mod search;

use crate::catalog::Catalog;
use crate::cli::SimulateArgs;
use crate::protocol::SchemaSet;
use crate::report::{Tally, Unit};
use calls::{Evaluated, Pipeline};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use record::RawRecord;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Patients evaluated in parallel between two writes of their results (bounded memory, and
/// output in input order).
const CHUNK: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("embedded schemas do not compile: {0}")]
    Schemas(String),
    #[error("the cards directory is invalid:\n{0}")]
    Cards(String),
    #[error("{0}")]
    Templates(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot start the worker threads: {0}")]
    Threads(String),
    #[error("{0}")]
    Report(#[from] crate::report::ReportError),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SimulateError + '_ {
    move |source| SimulateError::Io { path: path.to_path_buf(), source }
}

/// An input as given on the command line.
enum Input {
    Bundles(Vec<PathBuf>),
    Bulk { folder: PathBuf, files: Vec<PathBuf> },
}

/// What a run wrote and counted, for the command's summary line.
pub struct Summary {
    pub evaluated: u64,
    pub malformed: u64,
    pub out: PathBuf,
}

pub fn run(args: &SimulateArgs) -> Result<Summary, SimulateError> {
    let schemas = SchemaSet::compile().map_err(|e| SimulateError::Schemas(e.to_string()))?;
    let catalog = Catalog::load(&args.cards, &schemas).map_err(|e| SimulateError::Cards(e.to_string()))?;
    let now = args.now.unwrap_or_else(chrono::Utc::now);
    let pipeline = Pipeline::new(&catalog, &schemas, now).map_err(SimulateError::Templates)?;
    let inputs = args.inputs.iter().map(|p| classify(p)).collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(&args.out).map_err(io(&args.out))?;
    let mut sink = Sink::open(args)?;
    let mut tally = Tally::new(Unit::Patient);
    tally.expect_named_facts(catalog.rules.named_facts.iter().map(|(name, _)| name.as_str()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()
        .map_err(|e| SimulateError::Threads(e.to_string()))?;
    let progress = progress_bar();
    let mut run = Run { pipeline: &pipeline, pool: &pool, tally: &mut tally, sink: &mut sink, progress: &progress };
    for input in &inputs {
        match input {
            Input::Bundles(files) => run.bundles(files)?,
            Input::Bulk { folder, files } => run.bulk(folder, files)?,
        }
    }
    progress.finish_and_clear();
    sink.finish()?;
    let (evaluated, malformed) = (tally.evaluated(), tally.malformed_count());
    let names: Vec<String> = args.inputs.iter().map(|p| p.display().to_string()).collect();
    let source = format!("simulation of {} ({} patients evaluated)", names.join(", "), evaluated);
    let report = tally.finish(source, Some(now.to_rfc3339()), None);
    crate::report::write_files(&args.out, &report)?;
    Ok(Summary { evaluated, malformed, out: args.out.clone() })
}

fn classify(path: &Path) -> Result<Input, SimulateError> {
    if !path.is_dir() {
        return Ok(Input::Bundles(vec![path.to_path_buf()]));
    }
    if let Some(files) = bulk::ndjson_files(path).map_err(io(path))? {
        return Ok(Input::Bulk { folder: path.to_path_buf(), files });
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io(path))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.is_file() && (name.ends_with(".json") || name.ends_with(".json.gz"))
        })
        .collect();
    files.sort();
    Ok(Input::Bundles(files))
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {pos}/{len} patients [{elapsed}] {per_sec}") {
        bar.set_style(style);
    }
    bar
}

/// One run's collaborators.
struct Run<'a> {
    pipeline: &'a Pipeline<'a>,
    pool: &'a rayon::ThreadPool,
    tally: &'a mut Tally,
    sink: &'a mut Sink,
    progress: &'a ProgressBar,
}

impl Run<'_> {
    fn bundles(&mut self, files: &[PathBuf]) -> Result<(), SimulateError> {
        self.progress.set_message("bundles");
        self.progress.inc_length(files.len() as u64);
        for chunk in files.chunks(CHUNK) {
            let keep = self.sink.responses.is_some();
            let pipeline = self.pipeline;
            let results: Vec<(String, Result<Evaluated, String>)> = self.pool.install(|| {
                chunk
                    .par_iter()
                    .map(|file| {
                        let name = file.display().to_string();
                        (name, record::read_bundle(file).and_then(|r| pipeline.evaluate(&r, keep)))
                    })
                    .collect()
            });
            self.take(results)?;
        }
        Ok(())
    }

    fn bulk(&mut self, folder: &Path, files: &[PathBuf]) -> Result<(), SimulateError> {
        self.progress.set_message("grouping NDJSON by patient:");
        let mut unplaced = Vec::new();
        let parts = bulk::partition(files, self.pool, &mut unplaced).map_err(io(folder))?;
        self.progress.inc_length(parts.patients);
        self.progress.set_message("evaluating");
        for b in 0..parts.buckets() {
            let text = parts.read(b).map_err(io(folder))?;
            let mut records = bulk::group(&text, &mut unplaced).into_iter().peekable();
            while records.peek().is_some() {
                self.evaluate(records.by_ref().take(CHUNK).collect())?;
            }
        }
        for u in unplaced {
            self.tally.add_malformed(&format!("{}: {}", folder.display(), u.input), &u.reason);
        }
        Ok(())
    }

    fn evaluate(&mut self, records: Vec<RawRecord>) -> Result<(), SimulateError> {
        let keep = self.sink.responses.is_some();
        let pipeline = self.pipeline;
        let results: Vec<(String, Result<Evaluated, String>)> = self.pool.install(|| {
            records
                .into_par_iter()
                .map(|raw| (format!("Patient/{}", raw.id), raw.read().and_then(|r| pipeline.evaluate(&r, keep))))
                .collect()
        });
        self.take(results)
    }

    /// Results in input order: counted, and written to the per-patient files.
    fn take(&mut self, results: Vec<(String, Result<Evaluated, String>)>) -> Result<(), SimulateError> {
        self.progress.inc(results.len() as u64);
        for (input, result) in results {
            match result {
                Ok(evaluated) => {
                    self.tally.add(&evaluated.outcome);
                    self.sink.write(&evaluated)?;
                }
                Err(reason) => self.tally.add_malformed(&input, &reason),
            }
        }
        Ok(())
    }
}

/// The optional per-patient outputs: `patients.ndjson` (`--per-patient`) and
/// `responses.ndjson` (`--responses`: each call's exact request and response).
struct Sink {
    patients: Option<(PathBuf, BufWriter<std::fs::File>)>,
    responses: Option<(PathBuf, BufWriter<std::fs::File>)>,
}

impl Sink {
    fn open(args: &SimulateArgs) -> Result<Self, SimulateError> {
        let open = |wanted: bool, name: &str| -> Result<Option<(PathBuf, BufWriter<std::fs::File>)>, SimulateError> {
            if !wanted {
                return Ok(None);
            }
            let path = args.out.join(name);
            let file = std::fs::File::create(&path).map_err(io(&path))?;
            Ok(Some((path, BufWriter::new(file))))
        };
        Ok(Self {
            patients: open(args.per_patient, "patients.ndjson")?,
            responses: open(args.responses, "responses.ndjson")?,
        })
    }

    fn write(&mut self, evaluated: &Evaluated) -> Result<(), SimulateError> {
        if let Some((path, w)) = &mut self.patients {
            let o = &evaluated.outcome;
            let line = serde_json::json!({"patient": o.patient, "rules": o.rules(), "cards": o.card_count()});
            writeln!(w, "{line}").map_err(io(path))?;
        }
        if let Some((path, w)) = &mut self.responses {
            for line in &evaluated.responses {
                writeln!(w, "{line}").map_err(io(path))?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SimulateError> {
        for (path, w) in self.patients.iter_mut().chain(self.responses.iter_mut()) {
            w.flush().map_err(io(path))?;
        }
        Ok(())
    }
}
