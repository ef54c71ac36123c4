//! The folder layout is the architecture: imports between the top-level modules under `src/`
//! run one way. This test reads every `src/**/*.rs`, collects the `crate::<top>` paths (in `use`
//! lines and anywhere in code, comments and string literals excluded; `super::` chains that climb
//! to the crate root count too), builds the graph between top-level modules, and fails on a cycle
//! or on an import from a lower layer to a higher one, naming the file and line of each edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may import modules of its own layer or below (the cycle
/// check still applies within a layer). Leaves that import nothing of the crate (metrics, auth,
/// samples) sit at 0; `cli` is the configuration and names types of fhir, store and auth.
const LAYERS: &[(&str, u32)] = &[
    ("protocol", 0),
    ("metrics", 0),
    ("auth", 0),
    ("samples", 0),
    ("fhir", 1),
    ("knowledge", 2),
    ("facts", 3),
    ("rules", 4),
    ("cards", 5),
    ("catalog", 5),
    ("store", 5),
    ("service", 6),
    ("report", 6),
    ("cli", 6),
    ("http", 7),
    ("commands", 7),
    ("demo", 7),
    ("telemetry", 7),
    ("serve", 8),
];

/// One reference from a file of module `from` to top-level module `to`.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    file: String,
    line: usize,
}

#[test]
fn top_level_modules_import_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tops = top_level_modules(&src);
    let mut edges = Vec::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).expect("under src").to_path_buf();
        let Some(owner) = owner_of(&rel) else { continue };
        let text = std::fs::read_to_string(&file).expect("readable source");
        let code = strip_comments_and_strings(&text);
        for (line, target) in references(&code, &module_path(&rel)) {
            if target != owner && tops.contains(&target) {
                let file = format!("src/{}", rel.display());
                edges.push(Edge { from: owner.clone(), to: target, file, line });
            }
        }
    }
    let layer = |m: &str| LAYERS.iter().find(|(name, _)| *name == m).map(|(_, l)| *l);
    let mut problems = Vec::new();
    for cycle in cycles(&tops, &edges) {
        problems.push(format!("cycle between {{{}}}; its edges that do not go down a layer:", cycle.join(", ")));
        let inside = |e: &&Edge| cycle.contains(&e.from) && cycle.contains(&e.to);
        for e in edges.iter().filter(inside).filter(|e| layer(&e.to) >= layer(&e.from)) {
            problems.push(format!("  {} -> {}  {}:{}", e.from, e.to, e.file, e.line));
        }
    }
    for m in &tops {
        if layer(m).is_none() {
            problems.push(format!("module `{m}` has no layer: add it to LAYERS in tests/architecture.rs"));
        }
    }
    for e in &edges {
        if let (Some(from), Some(to)) = (layer(&e.from), layer(&e.to)) {
            if to > from {
                let (f, t, file, line) = (&e.from, &e.to, &e.file, e.line);
                problems.push(format!("upward import: {f} (layer {from}) -> {t} (layer {to})  {file}:{line}"));
            }
        }
    }
    assert!(problems.is_empty(), "module graph is not one-way:\n{}", problems.join("\n"));
}

/// Files stay under ~400 lines and functions under ~80 (STYLE): longer ones are split along
/// their seams, or carry a one-line reason (`// size: …`) in the file.
const MAX_FILE_LINES: usize = 400;
const MAX_FN_LINES: usize = 80;

#[test]
fn files_and_functions_stay_short() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for file in rust_files(&src) {
        let text = std::fs::read_to_string(&file).unwrap();
        if text.contains("// size: ") {
            continue;
        }
        let rel = file.strip_prefix(&src).unwrap().display().to_string();
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            problems.push(format!("src/{rel}: {lines} lines"));
        }
        for (name, line, length) in functions(&strip_comments_and_strings(&text)) {
            if length > MAX_FN_LINES {
                problems.push(format!("src/{rel}:{line}: fn {name} is {length} lines"));
            }
        }
    }
    assert!(problems.is_empty(), "over the size limits:\n{}", problems.join("\n"));
}

/// (name, first line, length in lines) of each `fn` with a body, by brace depth.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(at) =
            lines[i].find("fn ").filter(|&at| at == 0 || !lines[i].as_bytes()[at - 1].is_ascii_alphanumeric())
        else {
            i += 1;
            continue;
        };
        let name = ident(&lines[i][at + 3..]).to_string();
        let (mut depth, mut started, mut j) = (0i64, false, i);
        while j < lines.len() {
            let l = lines[j];
            if !started && l.trim_end().ends_with(';') && !l.contains('{') {
                break;
            }
            depth += l.matches('{').count() as i64 - l.matches('}').count() as i64;
            started |= l.contains('{');
            if started && depth <= 0 {
                break;
            }
            j += 1;
        }
        if started && !name.is_empty() {
            out.push((name, i + 1, j - i + 1));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn the_reader_sees_use_groups_paths_and_super_but_not_comments() {
    let code = strip_comments_and_strings(
        "use crate::{fhir::X, protocol};\n// crate::http\nlet s = \"crate::store\";\n\
         let c = '\"'; f(crate::rules::a);\n/* crate::cards */ use super::super::facts::Y;\n",
    );
    let found: Vec<(usize, String)> = references(&code, &["knowledge".into(), "units".into()]);
    let names: Vec<&str> = found.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(names, ["fhir", "protocol", "rules", "facts"]);
    assert_eq!(found[2].0, 4);
}

fn top_level_modules(src: &Path) -> BTreeSet<String> {
    let mut tops = BTreeSet::new();
    for entry in std::fs::read_dir(src).expect("src readable") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let is_module = path.is_dir() || path.extension().is_some_and(|e| e == "rs");
        if is_module && name != "lib" && name != "main" {
            tops.insert(name);
        }
    }
    tops
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("directory readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The top-level module a file belongs to; `None` for the crate root files.
fn owner_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let owner = first.strip_suffix(".rs").unwrap_or(first);
    (owner != "lib" && owner != "main").then(|| owner.to_string())
}

/// The module path of a file: `rules/book.rs` → [rules, book]; `facts/mod.rs` → [facts].
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.strip_suffix(".rs").unwrap_or(&last).to_string();
    if stem != "mod" {
        parts.push(stem);
    }
    parts
}

/// Replaces comments and the contents of string and char literals by spaces, keeping newlines,
/// so that line numbers stay right and only code is searched.
fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let (c, next) = (chars[i], chars.get(i + 1).copied());
        let end = if c == '/' && next == Some('/') {
            chars[i..].iter().position(|&c| c == '\n').map_or(chars.len(), |p| i + p)
        } else if c == '/' && next == Some('*') {
            block_comment_end(&chars, i)
        } else if c == '"' || (c == 'r' && matches!(next, Some('"' | '#')) && raw_start(&chars, i)) {
            string_end(&chars, i)
        } else if c == '\'' {
            char_literal_end(&chars, i).unwrap_or(i + 1)
        } else {
            out.push(c);
            i += 1;
            continue;
        };
        out.extend(chars[i..end].iter().map(|&c| blank(c)));
        i = end;
    }
    out
}

fn block_comment_end(chars: &[char], start: usize) -> usize {
    let (mut depth, mut i) = (0, start);
    while i + 1 < chars.len() {
        match (chars[i], chars[i + 1]) {
            ('/', '*') => (depth, i) = (depth + 1, i + 2),
            ('*', '/') => {
                (depth, i) = (depth - 1, i + 2);
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    chars.len()
}

/// `r"…"` or `r#"…"#` not preceded by an identifier character (so `bar"` is not a raw string).
fn raw_start(chars: &[char], i: usize) -> bool {
    let after = chars[i + 1..].iter().find(|&&c| c != '#');
    after == Some(&'"') && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
}

fn string_end(chars: &[char], start: usize) -> usize {
    let mut i = start;
    if chars[i] == 'r' {
        i += 1;
        let hashes = chars[i..].iter().take_while(|&&c| c == '#').count();
        i += hashes + 1;
        while i < chars.len() {
            if chars[i] == '"' && chars[i + 1..].iter().take(hashes).filter(|&&c| c == '#').count() == hashes {
                return i + 1 + hashes;
            }
            i += 1;
        }
        return chars.len();
    }
    i += 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// The end of a char literal starting at `start` (`'x'`, `'\n'`, `'\u{..}'`); `None` for a
/// lifetime or label.
fn char_literal_end(chars: &[char], start: usize) -> Option<usize> {
    if chars.get(start + 1) == Some(&'\\') {
        let close = chars[start + 2..].iter().position(|&c| c == '\'')?;
        return Some(start + 3 + close);
    }
    (chars.get(start + 2) == Some(&'\'')).then_some(start + 3)
}

/// Each (line, top-level module) referred to by a `crate::` path, a `use crate::{…}` group or a
/// `super::` chain that climbs to the crate root. `file_module` is the file's module path; inline
/// `mod x {` blocks are followed so that `super::` in a test module resolves right.
fn references(code: &str, file_module: &[String]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let (mut depth, mut line) = (0usize, 1usize);
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &code[i..];
        let boundary =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':');
        match bytes[i] {
            b'\n' => line += 1,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            _ if boundary && rest.starts_with("mod ") => {
                let name = ident(&rest[4..]);
                if code[i + 4 + name.len()..].trim_start().starts_with('{') {
                    inline.push((name.to_string(), depth));
                }
            }
            _ if boundary && rest.starts_with("crate::") => {
                targets_after(&rest[7..], line, &mut found);
            }
            _ if boundary && rest.starts_with("super::") => {
                let climbs = count_prefix(rest, "super::");
                let here = file_module.len() + inline.len();
                if climbs == here {
                    targets_after(&rest[climbs * 7..], line, &mut found);
                }
                i += climbs * 7;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

fn count_prefix(mut s: &str, prefix: &str) -> usize {
    let mut n = 0;
    while let Some(rest) = s.strip_prefix(prefix) {
        (n, s) = (n + 1, rest);
    }
    n
}

fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The module named right after `crate::`, or each first name of a `{a::b, c, d::{e}}` group.
fn targets_after(rest: &str, line: usize, found: &mut Vec<(usize, String)>) {
    let rest = rest.trim_start();
    let Some(group) = rest.strip_prefix('{') else {
        let name = ident(rest);
        if !name.is_empty() {
            found.push((line, name.to_string()));
        }
        return;
    };
    let (mut depth, mut item_start, mut offset) = (0usize, true, 0usize);
    for (k, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            '\n' => offset += 1,
            c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                found.push((line + offset, ident(&group[k..]).to_string()));
                item_start = false;
            }
            c if !c.is_whitespace() => item_start = false,
            _ => {}
        }
    }
}

/// Strongly connected components with more than one module (Tarjan), each sorted.
fn cycles(tops: &BTreeSet<String>, edges: &[Edge]) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = tops.iter().map(|t| (t.as_str(), BTreeSet::new())).collect();
    for e in edges {
        graph.entry(e.from.as_str()).or_default().insert(e.to.as_str());
    }
    struct Tarjan<'a> {
        graph: &'a BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for &w in &self.graph[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let at = self.stack.iter().position(|&x| x == v).expect("on stack");
                let mut component: Vec<String> = self.stack.split_off(at).into_iter().map(String::from).collect();
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t =
        Tarjan { graph: &graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for &v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.found
}
