//! Merged cards as data (`cards/merged-cards.json`, revision 2 C5): rules whose cards are
//! shown as one when two or more of them fire, so a patient on several drugs that can cause
//! cramps gets one medication review instead of a card per drug.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergedCardsFile {
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    pub description: String,
    pub merged: Vec<MergedCardFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergedCardFile {
    pub code: String,
    pub title: String,
    pub rules: Vec<String>,
    /// Placeholders: `{count}`, `{possessive}` (her/his/their), `{drugs}`.
    pub summary: String,
    pub detail: String,
}

/// A merged card with its rules resolved to positions in the rule set.
#[derive(Debug, Clone)]
pub struct MergedCard {
    pub code: String,
    pub title: String,
    pub rules: Vec<usize>,
    pub summary: String,
    pub detail: String,
}

/// Resolves rule ids; errors are (JSON pointer, message).
pub fn compile(file: &MergedCardsFile, rule_ids: &[String]) -> Result<Vec<MergedCard>, Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut claimed: Vec<&str> = Vec::new();
    for (i, m) in file.merged.iter().enumerate() {
        let mut rules = Vec::new();
        for (k, id) in m.rules.iter().enumerate() {
            match rule_ids.iter().position(|r| r == id) {
                Some(p) if !claimed.contains(&id.as_str()) => {
                    claimed.push(id);
                    rules.push(p);
                }
                Some(_) => {
                    errors.push((format!("/merged/{i}/rules/{k}"), format!("rule '{id}' is in two merged cards")))
                }
                None => errors.push((format!("/merged/{i}/rules/{k}"), format!("unknown rule '{id}'"))),
            }
        }
        if rule_ids.contains(&m.code) {
            errors.push((format!("/merged/{i}/code"), format!("'{}' is already a rule id", m.code)));
        }
        out.push(MergedCard {
            code: m.code.clone(),
            title: m.title.clone(),
            rules,
            summary: m.summary.clone(),
            detail: m.detail.clone(),
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
