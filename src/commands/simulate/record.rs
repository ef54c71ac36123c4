//! One patient's resources as the simulation holds them: each resource's JSON text, kept as
//! sent (it is parsed once more, by the service, exactly as a live request's prefetch), and
//! the few members the prefetch search reads. Read from a FHIR Bundle file (one patient).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

/// The resource types a patient's record is made of (those the services' prefetch reads).
pub const KINDS: [&str; 5] = ["Patient", "Condition", "Observation", "MedicationRequest", "MedicationStatement"];

/// The members a prefetch search looks at; everything else stays in the text. Any JSON shape
/// is accepted for them (a malformed one is the service's to report, as live).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    pub resource_type: String,
    #[serde(default)]
    pub id: Option<Value>,
    #[serde(default)]
    pub status: Option<Value>,
    #[serde(default)]
    pub category: Option<Value>,
    #[serde(default)]
    pub code: Option<Value>,
    #[serde(default)]
    pub effective_date_time: Option<Value>,
    #[serde(default)]
    pub effective_instant: Option<Value>,
    #[serde(default)]
    pub effective_period: Option<Value>,
    #[serde(default)]
    pub issued: Option<Value>,
}

impl Head {
    pub fn id(&self) -> Option<&str> {
        self.id.as_ref().and_then(Value::as_str)
    }

    pub fn status(&self) -> Option<&str> {
        self.status.as_ref().and_then(Value::as_str)
    }

    /// The date a search sorts by (`_sort=date`): the clinically relevant time, else `issued`.
    pub fn date(&self) -> Option<&str> {
        let period_start = self.effective_period.as_ref().and_then(|p| p.get("start"));
        [self.effective_date_time.as_ref(), self.effective_instant.as_ref(), period_start, self.issued.as_ref()]
            .into_iter()
            .flatten()
            .find_map(Value::as_str)
    }
}

/// The patient id of a reference `Patient/{id}` (relative or absolute).
pub fn patient_of(reference: &str) -> Option<&str> {
    reference.strip_prefix("Patient/").or_else(|| reference.rsplit_once("/Patient/").map(|(_, id)| id))
}

/// A resource's text (borrowed from a spill file's text, or owned from a Bundle) and head.
#[derive(Debug, Clone)]
pub struct Resource<'a> {
    pub text: Cow<'a, str>,
    pub head: Head,
}

impl<'a> Resource<'a> {
    pub fn parse(text: impl Into<Cow<'a, str>>) -> Result<Self, String> {
        let text = text.into();
        let head: Head = serde_json::from_str(&text).map_err(|e| format!("not a FHIR resource: {e}"))?;
        Ok(Self { text, head })
    }
}

/// A patient and every resource of the record that belongs to it.
#[derive(Debug, Clone)]
pub struct PatientRecord<'a> {
    pub id: String,
    pub resources: Vec<Resource<'a>>,
}

/// A patient's resources as exported lines, read (in parallel) just before evaluation.
#[derive(Debug, Clone)]
pub struct RawRecord<'a> {
    pub id: &'a str,
    pub lines: Vec<&'a str>,
}

impl<'a> RawRecord<'a> {
    pub fn read(self) -> Result<PatientRecord<'a>, String> {
        let resources = self.lines.into_iter().map(Resource::parse).collect::<Result<Vec<_>, _>>()?;
        Ok(PatientRecord { id: self.id.to_string(), resources })
    }
}

impl PatientRecord<'_> {
    pub fn patient(&self) -> Option<&Resource<'_>> {
        self.resources.iter().find(|r| r.head.resource_type == "Patient")
    }
}

/// A file's bytes, gunzipped when its name ends in `.gz`.
pub fn read_maybe_gzipped(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file)).read_to_end(&mut out)?;
    } else {
        std::io::BufReader::new(file).read_to_end(&mut out)?;
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleText<'a> {
    resource_type: String,
    #[serde(borrow, default)]
    entry: Vec<EntryText<'a>>,
}

#[derive(Deserialize)]
struct EntryText<'a> {
    #[serde(borrow, default)]
    resource: Option<&'a RawValue>,
}

/// A Bundle file holding one patient's record (any Bundle type: collection, transaction,
/// searchset). Resources of other types are left out: the services do not read them.
pub fn read_bundle(path: &Path) -> Result<PatientRecord<'static>, String> {
    let bytes = read_maybe_gzipped(path).map_err(|e| e.to_string())?;
    let bundle: BundleText = serde_json::from_slice(&bytes).map_err(|e| format!("not a FHIR Bundle: {e}"))?;
    if bundle.resource_type != "Bundle" {
        return Err(format!("a {} where a Bundle was expected", bundle.resource_type));
    }
    let mut resources = Vec::new();
    for (i, entry) in bundle.entry.iter().enumerate() {
        let Some(raw) = entry.resource else { continue };
        let resource = Resource::parse(raw.get().to_string()).map_err(|e| format!("entry {i}: {e}"))?;
        if KINDS.contains(&resource.head.resource_type.as_str()) {
            resources.push(resource);
        }
    }
    let patients: Vec<&Resource> = resources.iter().filter(|r| r.head.resource_type == "Patient").collect();
    let id = match patients.as_slice() {
        [one] => one.head.id().ok_or("the Patient has no id")?.to_string(),
        [] => return Err("no Patient resource".into()),
        many => return Err(format!("{} Patient resources: one patient per Bundle", many.len())),
    };
    Ok(PatientRecord { id, resources })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_name_their_date_and_patients_their_id() {
        let r = Resource::parse(
            r#"{"resourceType":"Observation","id":"o","effectivePeriod":{"start":"2026-01-02"},"status":5}"#,
        )
        .unwrap();
        assert_eq!((r.head.date(), r.head.status()), (Some("2026-01-02"), None));
        assert_eq!(patient_of("Patient/p1"), Some("p1"));
        assert_eq!(patient_of("https://ehr.example/fhir/Patient/p2"), Some("p2"));
        assert_eq!(patient_of("urn:uuid:1"), None);
        assert!(Resource::parse("[1]").is_err());
    }

    #[test]
    fn a_bundle_file_is_one_patient() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ok = write(
            "ok.json",
            r#"{"resourceType":"Bundle","type":"collection","entry":[
            {"resource":{"resourceType":"Patient","id":"p"}},{"resource":{"resourceType":"Encounter","id":"e"}},
            {"resource":{"resourceType":"Condition","id":"c","subject":{"reference":"urn:uuid:1"}}},{"fullUrl":"x"}]}"#,
        );
        let record = read_bundle(&ok).unwrap();
        assert_eq!((record.id.as_str(), record.resources.len()), ("p", 2));
        let two = write(
            "two.json",
            r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"a"}},{"resource":{"resourceType":"Patient","id":"b"}}]}"#,
        );
        assert!(read_bundle(&two).unwrap_err().contains("2 Patient resources"));
        assert!(read_bundle(&write("p.json", r#"{"resourceType":"Patient","id":"a"}"#))
            .unwrap_err()
            .contains("Bundle"));
        assert!(read_bundle(&write("t.json", "{")).unwrap_err().contains("not a FHIR Bundle"));
    }
}
