//! A FHIR Bulk Data export folder grouped by patient without holding the population.
//!
//! Bulk exports are one NDJSON file (or several) per resource type, in no promised order, so a
//! patient's resources are spread over every file. They are grouped in two bounded passes:
//! 1. each line is read once (gunzipped as it streams), its patient found from its `subject`
//!    (or its own id for a Patient), and the line appended to one of K spill files in a temporary
//!    folder, chosen by a hash of the patient id; K is the estimated uncompressed size over
//!    [`BUCKET_BYTES`], so each spill file holds a bounded slice of the population;
//! 2. each spill file in turn is read and grouped in memory, and its patients evaluated.
//!
//! Memory is bounded by one spill file (plus the patients being evaluated), whatever the size
//! of the population; disk holds one uncompressed copy of the export while it runs. Indexing
//! byte offsets instead would keep a per-resource index in memory that grows with the
//! population, and cannot seek inside gzip streams; a k-way merge would need files sorted by
//! patient, which the Bulk Data specification does not promise.

use super::record::{patient_of, RawRecord, KINDS};
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Target uncompressed bytes per spill file.
const BUCKET_BYTES: u64 = 24 << 20;
/// Gzipped NDJSON of FHIR resources expands about this much (the committed population:
/// 1.6 MB → 80 MB).
const GZIP_RATIO: u64 = 50;
/// Bytes read (and their lines placed in parallel) between two writes.
const BLOCK: usize = 4 << 20;

/// The NDJSON files of a folder (`*.ndjson`, `*.ndjson.gz`), or `None` when it has none.
pub fn ndjson_files(dir: &Path) -> std::io::Result<Option<Vec<PathBuf>>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.is_file() && (name.ends_with(".ndjson") || name.ends_with(".ndjson.gz"))
        })
        .collect();
    files.sort();
    Ok((!files.is_empty()).then_some(files))
}

/// A line that could not be placed: where, and why.
pub struct Unplaced {
    pub input: String,
    pub reason: String,
}

/// The spill files of one export, grouped on demand.
pub struct Partitioned {
    _dir: tempfile::TempDir,
    buckets: Vec<PathBuf>,
    /// Patient resources seen (the progress bar's length).
    pub patients: u64,
}

/// Pass 1: every line of `files` into its patient's spill file, as `id \t P|R \t line` (P for
/// the Patient itself). The files are read in blocks; the lines of a block are placed in
/// parallel and written in their order. Lines that are not resources, or have no patient, are
/// returned as unplaced (not fatal).
pub fn partition(
    files: &[PathBuf],
    pool: &rayon::ThreadPool,
    unplaced: &mut Vec<Unplaced>,
) -> std::io::Result<Partitioned> {
    let estimate: u64 = files
        .iter()
        .map(|f| {
            let len = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
            if f.extension().is_some_and(|e| e == "gz") {
                len * GZIP_RATIO
            } else {
                len
            }
        })
        .sum();
    let k = estimate.div_ceil(BUCKET_BYTES).max(1) as usize;
    let dir = tempfile::Builder::new().prefix("leg-cramp-cds-simulate-").tempdir()?;
    let buckets: Vec<PathBuf> = (0..k).map(|i| dir.path().join(format!("bucket-{i}.tsv"))).collect();
    let mut writers =
        buckets.iter().map(|p| std::fs::File::create(p).map(BufWriter::new)).collect::<Result<Vec<_>, _>>()?;
    let mut patients = 0;
    for file in files {
        let mut reader: Box<dyn Read> = if file.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(std::fs::File::open(file)?)))
        } else {
            Box::new(std::fs::File::open(file)?)
        };
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
        let (mut block, mut line_number) = (Vec::with_capacity(BLOCK + 4096), 0usize);
        loop {
            let more = fill(&mut reader, &mut block)?;
            // Whole lines only; the tail of an unfinished line waits for the next block.
            let end = if more { block.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) } else { block.len() };
            let complete = &block[..end];
            let body = complete.strip_suffix(b"\n").unwrap_or(complete);
            let lines: Vec<(usize, &[u8])> = match end {
                0 => Vec::new(),
                _ => body.split(|&b| b == b'\n').enumerate().map(|(i, l)| (line_number + i + 1, l)).collect(),
            };
            line_number += lines.len();
            let placed: Vec<Result<Option<(String, bool)>, String>> =
                pool.install(|| lines.par_iter().map(|(_, line)| place(line)).collect());
            for ((n, line), place) in lines.iter().zip(placed) {
                match place {
                    Ok(Some((patient, is_patient))) => {
                        patients += u64::from(is_patient);
                        let w = &mut writers[bucket_of(&patient, k)];
                        w.write_all(patient.as_bytes())?;
                        w.write_all(if is_patient { b"\tP\t" } else { b"\tR\t" })?;
                        w.write_all(line.trim_ascii())?;
                        w.write_all(b"\n")?;
                    }
                    Ok(None) => {}
                    Err(reason) => unplaced.push(Unplaced { input: format!("{name} line {n}"), reason }),
                }
            }
            block.drain(..end);
            if !more {
                break;
            }
        }
    }
    for w in &mut writers {
        w.flush()?;
    }
    Ok(Partitioned { _dir: dir, buckets, patients })
}

/// Reads about [`BLOCK`] more bytes into `block`; `false` once the input is exhausted.
fn fill(reader: &mut dyn Read, block: &mut Vec<u8>) -> std::io::Result<bool> {
    let target = block.len() + BLOCK;
    while block.len() < target {
        let start = block.len();
        block.resize(start + 64 * 1024, 0);
        let n = reader.read(&mut block[start..])?;
        block.truncate(start + n);
        if n == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Just what placing a line needs, borrowed from it: nothing else is built.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Placing<'a> {
    #[serde(borrow)]
    resource_type: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    subject: Option<ReferenceText<'a>>,
    #[serde(borrow, default)]
    patient: Option<ReferenceText<'a>>,
}

#[derive(serde::Deserialize)]
struct ReferenceText<'a> {
    #[serde(borrow, default)]
    reference: Option<Cow<'a, str>>,
}

/// The patient a line belongs to (and whether it is the Patient itself); `None` for blank
/// lines and resource types the services do not read.
fn place(line: &[u8]) -> Result<Option<(String, bool)>, String> {
    if line.trim_ascii().is_empty() {
        return Ok(None);
    }
    let head: Placing = serde_json::from_slice(line).map_err(|e| format!("not a FHIR resource: {e}"))?;
    if !KINDS.contains(&head.resource_type.as_ref()) {
        return Ok(None);
    }
    let is_patient = head.resource_type == "Patient";
    let id = if is_patient {
        head.id.as_deref()
    } else {
        let reference = head.subject.as_ref().or(head.patient.as_ref()).and_then(|r| r.reference.as_deref());
        reference.and_then(patient_of)
    };
    let id = id.ok_or("no Patient reference in subject")?;
    if id.is_empty() || id.contains(['\t', '\n', '\r']) {
        return Err("the patient id is empty or has control characters".into());
    }
    Ok(Some((id.to_string(), is_patient)))
}

fn bucket_of(patient: &str, k: usize) -> usize {
    // SipHash with fixed keys: the same patient lands in the same bucket on every run.
    let mut h = std::hash::DefaultHasher::new();
    patient.hash(&mut h);
    (h.finish() % k as u64) as usize
}

impl Partitioned {
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// One spill file's text (its lines are borrowed by [`group`]).
    pub fn read(&self, bucket: usize) -> std::io::Result<String> {
        std::fs::read_to_string(&self.buckets[bucket])
    }
}

/// Pass 2 for one spill file's text: its patients, sorted by id, each with its lines in export
/// order (read into resources later, in parallel). A group without exactly one Patient
/// resource is returned as unplaced.
pub fn group<'a>(text: &'a str, unplaced: &mut Vec<Unplaced>) -> Vec<RawRecord<'a>> {
    let mut groups: HashMap<&str, (usize, Vec<&str>)> = HashMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(patient), Some(marker), Some(resource)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let group = groups.entry(patient).or_default();
        group.0 += usize::from(marker == "P");
        group.1.push(resource);
    }
    let mut records: Vec<RawRecord> = Vec::with_capacity(groups.len());
    for (id, (patient_resources, lines)) in groups {
        match patient_resources {
            1 => records.push(RawRecord { id, lines }),
            0 => unplaced.push(Unplaced {
                input: format!("Patient/{id}"),
                reason: format!("{} resources refer to a patient the export has no Patient resource for", lines.len()),
            }),
            n => unplaced.push(Unplaced {
                input: format!("Patient/{id}"),
                reason: format!("{n} Patient resources with this id"),
            }),
        }
    }
    records.sort_by(|a, b| a.id.cmp(b.id));
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsorted_files_are_grouped_by_patient() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Observation.ndjson"),
            "{\"resourceType\":\"Observation\",\"id\":\"o2\",\"subject\":{\"reference\":\"Patient/b\"}}\n\n\
             {\"resourceType\":\"Observation\",\"id\":\"o1\",\"subject\":{\"reference\":\"Patient/a\"}}\n\
             {\"resourceType\":\"Observation\",\"id\":\"o3\"}\nnot json\n\
             {\"resourceType\":\"Observation\",\"id\":\"o4\",\"subject\":{\"reference\":\"Patient/ghost\"}}\n",
        )
        .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"resourceType\":\"Patient\",\"id\":\"b\"}\n{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Encounter\",\"id\":\"e\"}\n").unwrap();
        std::fs::write(dir.path().join("Patient.ndjson.gz"), gz.finish().unwrap()).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let files = ndjson_files(dir.path()).unwrap().unwrap();
        assert_eq!(files.len(), 2);
        let mut unplaced = Vec::new();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let parts = partition(&files, &pool, &mut unplaced).unwrap();
        assert_eq!(parts.patients, 2);
        let texts: Vec<String> = (0..parts.buckets()).map(|b| parts.read(b).unwrap()).collect();
        let mut records: Vec<RawRecord> = texts.iter().flat_map(|t| group(t, &mut unplaced)).collect();
        records.sort_by(|x, y| x.id.cmp(y.id));
        let summary: Vec<(&str, usize)> = records.iter().map(|r| (r.id, r.lines.len())).collect();
        assert_eq!(summary, [("a", 2), ("b", 2)]);
        let reasons: Vec<String> = unplaced.iter().map(|u| format!("{}: {}", u.input, u.reason)).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].starts_with("Observation.ndjson line 4: no Patient reference"), "{reasons:?}");
        assert!(reasons[1].starts_with("Observation.ndjson line 5: not a FHIR resource"), "{reasons:?}");
        assert!(reasons[2].starts_with("Patient/ghost: 1 resources refer to a patient"), "{reasons:?}");
    }

    #[test]
    fn a_patient_always_lands_in_the_same_bucket() {
        assert_eq!(bucket_of("pop-00001", 7), bucket_of("pop-00001", 7));
        let spread: std::collections::HashSet<usize> = (0..200).map(|i| bucket_of(&format!("p{i}"), 4)).collect();
        assert_eq!(spread.len(), 4);
    }
}
