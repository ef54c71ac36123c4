//! Whole-word phrase lookup in free text: ingredient names, brand names and dose-form words
//! found in a medication's text or display. Text and phrases are compared as lower-case
//! alphanumeric words, so "Mag-Ox 400" contains the phrase "mag ox" and "Lipitor®" contains
//! "lipitor", while "chlorothiazidex" contains neither "chlorothiazide" nor anything else.

use std::collections::HashMap;

/// Phrases (one or more words) → values, found in a text in one pass over its words.
#[derive(Debug, Clone)]
pub struct PhraseIndex<T> {
    /// Lower-case words joined by one space → values.
    phrases: HashMap<String, Vec<T>>,
    /// First word of a phrase → the most words of a phrase starting with it: most words of
    /// a text start no phrase and cost one lookup.
    first_words: HashMap<String, usize>,
}

impl<T> Default for PhraseIndex<T> {
    fn default() -> Self {
        Self { phrases: HashMap::new(), first_words: HashMap::new() }
    }
}

/// A text split once into lower-case alphanumeric words, to be searched by several indexes.
#[derive(Debug, Clone)]
pub struct Words {
    lower: String,
    spans: Vec<(usize, usize)>,
}

impl Words {
    pub fn new(text: &str) -> Self {
        let lower = text.to_lowercase();
        let mut spans = Vec::new();
        let mut start = None;
        for (i, c) in lower.char_indices() {
            if c.is_alphanumeric() {
                start.get_or_insert(i);
            } else if let Some(s) = start.take() {
                spans.push((s, i));
            }
        }
        if let Some(s) = start {
            spans.push((s, lower.len()));
        }
        Words { lower, spans }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn word(&self, i: usize) -> &str {
        let (s, e) = self.spans[i];
        &self.lower[s..e]
    }
}

/// One phrase found in a text: the phrase as indexed, where it stands (word positions,
/// end exclusive) and its values.
#[derive(Debug, Clone, Copy)]
pub struct PhraseMatch<'a, T> {
    pub phrase: &'a str,
    pub start: usize,
    pub end: usize,
    pub values: &'a [T],
}

impl<T: PartialEq> PhraseIndex<T> {
    /// Adds a phrase; `false` (and nothing added) if it has no word.
    pub fn insert(&mut self, phrase: &str, value: T) -> bool {
        let w = words(phrase);
        let Some(first) = w.first() else { return false };
        let longest = self.first_words.entry(first.clone()).or_default();
        *longest = (*longest).max(w.len());
        let values = self.phrases.entry(w.join(" ")).or_default();
        if !values.contains(&value) {
            values.push(value);
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    /// The values of a phrase given as text (compared as words).
    pub fn get(&self, phrase: &str) -> &[T] {
        self.phrases.get(&words(phrase).join(" ")).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Calls `found` for every indexed phrase occurring as whole words in `text`, in order of
    /// position (overlapping phrases included: "magnesium oxide" and "magnesium").
    pub fn find<'a>(&'a self, text: &Words, mut found: impl FnMut(PhraseMatch<'a, T>)) {
        let mut phrase = String::new();
        for start in 0..text.len() {
            let Some(&longest) = self.first_words.get(text.word(start)) else { continue };
            phrase.clear();
            for (n, i) in (start..text.len()).take(longest).enumerate() {
                if n > 0 {
                    phrase.push(' ');
                }
                phrase.push_str(text.word(i));
                if let Some((key, values)) = self.phrases.get_key_value(phrase.as_str()) {
                    found(PhraseMatch { phrase: key, start, end: i + 1, values });
                }
            }
        }
    }

    /// [`Self::find`] in a text not yet split.
    pub fn find_in<'a>(&'a self, text: &str, found: impl FnMut(PhraseMatch<'a, T>)) {
        if !self.is_empty() {
            self.find(&Words::new(text), found);
        }
    }

    /// Whether any indexed phrase occurs in `text`.
    pub fn occurs(&self, text: &Words) -> bool {
        let mut any = false;
        self.find(text, |_| any = true);
        any
    }

    /// [`Self::occurs`] in a text not yet split.
    pub fn occurs_in(&self, text: &str) -> bool {
        !self.is_empty() && self.occurs(&Words::new(text))
    }
}

/// Lower-case alphanumeric words of a text.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_match_whole_words_only_and_overlap() {
        let mut ix = PhraseIndex::default();
        assert!(ix.insert("Magnesium Oxide", 1));
        assert!(ix.insert("magnesium", 2));
        assert!(ix.insert("Mag-Ox", 3));
        assert!(!ix.insert(" - ", 4), "no word");
        let mut seen = Vec::new();
        ix.find_in("MAG-OX 400 (magnesium oxide) tablet", |m| seen.push((m.phrase.to_string(), m.start, m.end)));
        assert_eq!(seen, vec![("mag ox".into(), 0, 2), ("magnesium".into(), 3, 4), ("magnesium oxide".into(), 3, 5)]);
        assert!(!ix.occurs_in("magnesiumx oxide"), "a longer word is not the phrase");
        assert_eq!(ix.get("MAGNESIUM  oxide"), &[1]);
        assert!(ix.get("oxide").is_empty());
    }
}
