//! The module layout stays layered: no import circles, a pure core that never reaches the
//! networked shell, and a single home for the MQTT client crate.
//!
//! `src/` is read as text with std only: comments, literals and test code are dropped, and every
//! path naming another source file becomes an edge of the file graph. A `mod child;` line only
//! declares a file, so it is no edge; `pub use child::X` is one.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

/// Files (relative to `src/`) forming the pure core: data types and algorithms that need no
/// network, runtime or journal, so they stay testable alone and reusable by offline tooling.
/// Add a file once it is pure; a name that no longer exists fails the test instead of rotting.
const PURE_CORE: &[&str] = &[
    // the codec
    "delta/mod.rs",
    "delta/frame.rs",
    "delta/change.rs",
    "delta/assemble.rs",
    "delta/limits.rs",
    "cbor.rs",
    // the conflict rule
    "hlc.rs",
    "update_sequence.rs",
    // the diff, and what it knows of GeoServer's data directory
    "datadir/scan.rs",
    "datadir/listing.rs",
    "datadir/rescan.rs",
    "datadir/entry.rs",
    "datadir/manifest.rs",
    "datadir/catalog.rs",
    "datadir/index.rs",
    "datadir/path.rs",
    "datadir/filter.rs",
    // the apply plan
    "slave/apply/plan.rs",
    // the history's store and what its commands print
    "history/mod.rs",
    "history/note.rs",
    "history/diff.rs",
    "history/time.rs",
    "history/view.rs",
];

/// Module path prefixes of the shell, which the pure core must not reach even transitively: the
/// MQTT transport, the GeoServer reload machinery and the journaled node state. A prefix matches
/// whole segments: "mqtt" covers mqtt.rs, mqtt/mod.rs and mqtt/x.rs, not `mqtt_x.rs`.
const FORBIDDEN_FOR_CORE_MODULES: &[&str] = &["mqtt", "reload", "state"];

/// External crates no file reached by the pure core may name: the async runtime and the MQTT
/// client. A crate counts as named where it starts a path (`tokio::x`) or follows `use`.
const FORBIDDEN_FOR_CORE_CRATES: &[&str] = &["tokio", "rumqttc"];

/// The MQTT client crate, and the one top-level module that may name it: everything else talks
/// to the broker through that module, so a client upgrade touches one directory.
const MQTT_CRATE: &str = "rumqttc";
const MQTT_HOME: &str = "mqtt";

/// The library's name: `src/main.rs` reaches the library through it, as `crate::` does inside.
const CRATE_NAME: &str = "gscluster";

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

#[test]
fn no_import_circle_between_files_or_modules() {
    let tree = load(Path::new(SRC));
    let found = [file_circles(&tree), module_circles(&tree)].concat();
    assert_none(
        "import circles (a `mod x;` line is no import; test code is ignored)",
        &found,
    );
}

#[test]
fn pure_core_imports_no_shell() {
    let tree = load(Path::new(SRC));
    let (modules, crates) = (FORBIDDEN_FOR_CORE_MODULES, FORBIDDEN_FOR_CORE_CRATES);
    let found = core_violations(&tree, PURE_CORE, modules, crates);
    assert_none("the pure core reaches the shell", &found);
}

#[test]
fn only_mqtt_names_rumqttc() {
    let found = mqtt_crate_outside_home(&load(Path::new(SRC)));
    assert_none("the MQTT client crate is named outside its module", &found);
}

fn assert_none(rule: &str, found: &[String]) {
    let all = found.join("\n\n");
    assert!(
        found.is_empty(),
        "{rule}: {} violation(s)\n\n{all}\n",
        found.len()
    );
}

// ---- reading one file ----

/// A token of code (a name or punctuation; comments and literals are gone) and its line.
struct Tok {
    text: String,
    line: usize,
}

fn is_ident_char(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// Whether a token is a name (numbers never become tokens).
fn is_name(text: &str) -> bool {
    text.starts_with(is_ident_char)
}

fn word(toks: &[Tok], k: usize) -> &str {
    toks.get(k).map_or("", |t| t.text.as_str())
}

/// Splits source into tokens, skipping comments (nested too), string, char and number literals
/// and lifetimes: nothing in prose or inside a literal can pass for a path.
fn lex(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    // Past the next unescaped `stop` from j.
    let past = |mut j: usize, stop: char| {
        while j < c.len() && c[j] != stop {
            j += if c[j] == '\\' { 2 } else { 1 };
        }
        j + 1
    };
    let name_end = |j: usize| j + c[j..].iter().take_while(|&&x| is_ident_char(x)).count();
    let (mut i, mut seen, mut line, mut out) = (0, 0, 1, Vec::new());
    let mut push = |from: usize, text: String| {
        line += c[seen..from].iter().filter(|&&x| x == '\n').count();
        seen = from;
        out.push(Tok { text, line });
    };
    while i < c.len() {
        let (ch, next) = (c[i], at(i + 1));
        if ch == '/' && next == '/' {
            i += c[i..].iter().take_while(|&&x| x != '\n').count();
        } else if ch == '/' && next == '*' {
            let mut depth = 0;
            while i < c.len() {
                let pair = (c[i], at(i + 1));
                depth += i32::from(pair == ('/', '*')) - i32::from(pair == ('*', '/'));
                i += 1 + usize::from(matches!(pair, ('/', '*') | ('*', '/')));
                if depth == 0 {
                    break;
                }
            }
        } else if let Some(end) = raw_string_end(&c, i) {
            i = end;
        } else if ch == '"' || (matches!(ch, 'b' | 'c') && next == '"') {
            i = past(i + if ch == '"' { 1 } else { 2 }, '"');
        } else if ch == '\'' || (ch == 'b' && next == '\'') {
            i += if ch == 'b' { 2 } else { 1 };
            // `'x'` and `'\n'` are chars; `'a` with no quote right after is a lifetime or label.
            let is_char = at(i) == '\\' || at(i + 1) == '\'';
            i = if is_char { past(i, '\'') } else { name_end(i) };
        } else if ch == 'r' && next == '#' && is_ident_char(at(i + 2)) {
            push(i + 2, c[i + 2..name_end(i + 2)].iter().collect()); // a raw name, `r#type`
            i = name_end(i + 2);
        } else if is_ident_char(ch) {
            if !ch.is_ascii_digit() {
                push(i, c[i..name_end(i)].iter().collect());
            }
            i = name_end(i);
        } else if ch == ':' && next == ':' {
            push(i, "::".into());
            i += 2;
        } else {
            if !ch.is_whitespace() {
                push(i, ch.into());
            }
            i += 1;
        }
    }
    out
}

/// At `r"`, `r#"`, `br"` or `cr"`: where the raw string ends.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let r = i + usize::from(matches!(c[i], 'b' | 'c'));
    let hashes = c.iter().skip(r + 1).take_while(|&&h| h == '#').count();
    if c.get(r) != Some(&'r') || c.get(r + 1 + hashes) != Some(&'"') {
        return None;
    }
    let close: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    let body = r + hashes + 2;
    let end = c[body..].windows(close.len()).position(|w| w == close);
    Some(end.map_or(c.len(), |p| body + p + close.len()))
}

/// Drops test-only code: each item under `#[cfg(test)]` (usually `mod tests { .. }`), and the
/// whole file under `#![cfg(test)]`. Tests may import anything; only shipped code is layered.
fn drop_test_code(toks: Vec<Tok>) -> Vec<Tok> {
    let pattern = ["[", "cfg", "(", "test", ")", "]"];
    let cfg_test_at = |k: usize| (0..6).all(|n| word(&toks, k + n) == pattern[n]);
    let mut keep = vec![true; toks.len()];
    let mut k = 0;
    while k < toks.len() {
        if word(&toks, k) == "#" && word(&toks, k + 1) == "!" && cfg_test_at(k + 2) {
            return Vec::new();
        } else if word(&toks, k) == "#" && cfg_test_at(k + 1) {
            let end = item_end(&toks, k + 7);
            keep[k..end].fill(false);
            k = end;
        } else {
            k += 1;
        }
    }
    toks.into_iter()
        .zip(keep)
        .filter_map(|(t, kept)| kept.then_some(t))
        .collect()
}

/// Where the item starting at k ends: after its `;` or its braced body, whichever comes first
/// outside brackets (so the `;` of `[u8; 4]` ends nothing).
fn item_end(toks: &[Tok], mut k: usize) -> usize {
    let (mut brackets, mut braces) = (0, 0);
    while k < toks.len() {
        match word(toks, k) {
            "(" | "[" => brackets += 1,
            ")" | "]" => brackets -= 1,
            "{" => braces += 1,
            "}" if braces == 0 => return k, // the enclosing block ends: the item was a field
            "}" if braces == 1 && brackets == 0 => return k + 1,
            "}" => braces -= 1,
            ";" if braces == 0 && brackets == 0 => return k + 1,
            _ => {}
        }
        k += 1;
    }
    k
}

/// A path that may name another file, as written.
struct Ref {
    /// Inline modules (`mod x { .. }`) around the path, inside the file's own module.
    inline: Vec<String>,
    segs: Vec<String>,
    /// The name a `use` binds: `x` for `use a::x`, `y` for `as y`, `a` for `a::{self}`.
    bind: Option<String>,
}

#[derive(Default)]
struct Parsed {
    refs: Vec<Ref>,
    /// `mod name;` declarations: files below this one.
    children: Vec<String>,
    /// Names that start a path or follow `use` or `extern crate`: how a crate shows in code.
    roots: Vec<(String, usize)>,
    /// The line of a `#[path]` attribute, which would move a module away from its usual file.
    path_attr: Option<usize>,
}

fn parse(toks: &[Tok]) -> Parsed {
    let mut p = Parsed::default();
    for (k, t) in toks.iter().enumerate() {
        let before = |n: usize| k.checked_sub(n).map_or("", |j| word(toks, j));
        // `::tokio::x` starts a path just like `tokio::x`; `a::b` and `Vec::<u8>::new` go on one.
        let leading = before(2) == "use" || !(is_name(before(2)) || before(2) == ">");
        let starts = (before(1) != "::" || leading) && word(toks, k + 1) == "::";
        if is_name(&t.text) && (starts || matches!(before(1), "use" | "crate")) {
            p.roots.push((t.text.clone(), t.line));
        }
    }
    let (mut k, mut depth) = (0, 0);
    let mut inline: Vec<(String, usize)> = Vec::new(); // an inline module and the depth inside it
    while k < toks.len() {
        let here: Vec<String> = inline.iter().map(|(name, _)| name.clone()).collect();
        match word(toks, k) {
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            "#" if word(toks, k + 1) == "[" && word(toks, k + 2) == "path" => {
                p.path_attr = Some(toks[k].line);
            }
            "mod" if is_name(word(toks, k + 1)) && word(toks, k + 2) == "{" => {
                depth += 1;
                inline.push((toks[k + 1].text.clone(), depth));
                k += 2;
            }
            "mod" if is_name(word(toks, k + 1)) && inline.is_empty() => {
                p.children.push(toks[k + 1].text.clone());
            }
            "use" => {
                let mut found = Vec::new();
                use_tree(toks, &mut k, Vec::new(), &mut found);
                let to_ref = |(segs, bind)| Ref {
                    inline: here.clone(),
                    segs,
                    bind,
                };
                p.refs.extend(found.into_iter().map(to_ref));
            }
            w if is_name(w)
                && word(toks, k + 1) == "::"
                && (k == 0 || word(toks, k - 1) != "::") =>
            {
                let mut segs = vec![w.to_string()];
                while word(toks, k + 1) == "::" && is_name(word(toks, k + 2)) {
                    segs.push(toks[k + 2].text.clone());
                    k += 2;
                }
                p.refs.push(Ref {
                    inline: here,
                    segs,
                    bind: None,
                });
            }
            _ => {}
        }
        k += 1;
    }
    p
}

/// Flattens the use tree after token k (`a::{b::{self, C}, d as e, *}`) into full paths and
/// the names they bind; k ends on the tree's last token.
fn use_tree(toks: &[Tok], k: &mut usize, mut path: Vec<String>, out: &mut Vec<UsePath>) {
    *k += 1;
    match word(toks, *k) {
        "::" => use_tree(toks, k, path, out),
        "*" => out.push((path, None)),
        "{" => {
            while !matches!(word(toks, *k), "}" | "") {
                use_tree(toks, k, path.clone(), out);
                *k += 1; // onto the `,` or `}` after the subtree
            }
        }
        w if is_name(w) => {
            path.push(w.to_string());
            if word(toks, *k + 1) == "::" {
                return use_tree(toks, k, path, out);
            }
            if path.len() > 1 && w == "self" {
                path.pop();
            }
            let mut bind = path.last().cloned();
            if word(toks, *k + 1) == "as" {
                bind = Some(word(toks, *k + 2).to_string());
                *k += 2;
            }
            out.push((path, bind));
        }
        _ => *k -= 1,
    }
}

type UsePath = (Vec<String>, Option<String>);

// ---- the file graph ----

/// What a file's names mean: its module, its `mod` children, the names its `use`s bind.
struct Scope<'a> {
    module: &'a [String],
    children: &'a [String],
    binds: BTreeMap<String, Vec<String>>,
    is_main: bool,
}

impl Scope<'_> {
    /// The absolute module path a reference names, or None when it starts outside the crate
    /// (std, another crate, a local type or variant).
    fn absolute(&self, r: &Ref) -> Option<Vec<String>> {
        let (first, rest) = r.segs.split_first()?;
        let mut base: Vec<String> = self.module.iter().chain(&r.inline).cloned().collect();
        let ups = r.segs.iter().take_while(|s| *s == "super").count();
        match first.as_str() {
            "crate" => Some(rest.to_vec()),
            name if name == CRATE_NAME && self.is_main => Some(rest.to_vec()),
            "self" => Some([base.as_slice(), rest].concat()),
            "super" => {
                base.truncate(base.len().checked_sub(ups)?);
                Some([base.as_slice(), &r.segs[ups..]].concat())
            }
            name if r.inline.is_empty() && self.children.iter().any(|c| c == name) => {
                Some([base.as_slice(), &r.segs].concat())
            }
            name => self.binds.get(name).map(|b| [b.as_slice(), rest].concat()),
        }
    }
}

/// The module of a file from where it lies: lib.rs and main.rs are the root, a/mod.rs is `a`.
fn module_of(rel: &str) -> Vec<String> {
    let stem = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut segs: Vec<String> = stem.split('/').map(String::from).collect();
    if segs.last().is_some_and(|s| s == "mod") || matches!(stem, "lib" | "main") {
        segs.pop();
    }
    segs
}

/// Every `*.rs` below dir, relative to root, but `tests.rs`: unit tests by convention.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for path in entries.map(|e| e.expect("a directory entry").path()) {
        if path.is_dir() {
            walk(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
            let rel = path.strip_prefix(root).expect("below root");
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

struct File {
    rel: String,
    module: Vec<String>,
    roots: Vec<(String, usize)>,
}

/// The source files, sorted by path, and the imports between them: (from, to) → names taken.
struct Tree {
    files: Vec<File>,
    edges: BTreeMap<(usize, usize), BTreeSet<String>>,
}

fn load(root: &Path) -> Tree {
    let mut rels = Vec::new();
    walk(root, root, &mut rels);
    rels.sort();
    let mut parsed = Vec::new();
    for rel in &rels {
        let path = root.join(rel);
        let src = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"));
        let p = parse(&drop_test_code(lex(&src)));
        if let Some(line) = p.path_attr {
            panic!("src/{rel}:{line}: a #[path] module; this check knows only the usual layout");
        }
        parsed.push(p);
    }
    let modules: Vec<Vec<String>> = rels.iter().map(String::as_str).map(module_of).collect();
    // The root (lib.rs, main.rs) is no key: naming the crate root is no edge.
    let mut by_module = BTreeMap::new();
    for (f, m) in modules.iter().enumerate().filter(|(_, m)| !m.is_empty()) {
        by_module.insert(m.as_slice(), f);
    }
    let mut edges: BTreeMap<(usize, usize), BTreeSet<String>> = BTreeMap::new();
    for (f, p) in parsed.iter().enumerate() {
        let (module, children, is_main) = (&modules[f], &p.children, rels[f] == "main.rs");
        let mut scope = Scope {
            module,
            children,
            binds: BTreeMap::new(),
            is_main,
        };
        // A `use` may build on a name another binds (`use x::{self}; use x::y;`), in any order.
        while let Some((name, abs)) = p.refs.iter().find_map(|r| {
            let name = r
                .bind
                .as_ref()
                .filter(|n| *n != "_" && !scope.binds.contains_key(*n))?;
            Some((name.clone(), scope.absolute(r)?))
        }) {
            scope.binds.insert(name, abs);
        }
        for r in &p.refs {
            let abs = scope.absolute(r).unwrap_or_default();
            // The deepest module that is a file: `crate::a::b::C` is a/b.rs, else a.rs.
            let to = (1..=abs.len())
                .rev()
                .find_map(|n| by_module.get(&abs[..n]).copied());
            if let Some(to) = to.filter(|&to| to != f) {
                let name = r.segs.last().cloned().unwrap_or_default();
                edges.entry((f, to)).or_default().insert(name);
            }
        }
    }
    let files = rels.into_iter().zip(modules).zip(parsed);
    let files = files
        .map(|((rel, module), p)| File {
            rel,
            module,
            roots: p.roots,
        })
        .collect();
    Tree { files, edges }
}

// ---- the checks ----

fn adjacency(n: usize, arrows: impl Iterator<Item = (usize, usize)>) -> Vec<Vec<usize>> {
    let mut adj = vec![Vec::new(); n];
    arrows.for_each(|(a, b)| adj[a].push(b));
    adj
}

/// A shortest path from start to each node reached over the nodes `keep` accepts (BFS).
fn paths_from(adj: &[Vec<usize>], start: usize, keep: impl Fn(usize) -> bool) -> Paths {
    let mut paths = BTreeMap::from([(start, vec![start])]);
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &u in adj[v].iter().filter(|&&u| keep(u)) {
            let path = [&paths[&v][..], &[u]].concat();
            if let Entry::Vacant(e) = paths.entry(u) {
                e.insert(path);
                queue.push_back(u);
            }
        }
    }
    paths
}

type Paths = BTreeMap<usize, Vec<usize>>;

/// The strongly connected components with more than one member, each holding a circle. The
/// graphs have a few dozen nodes, so mutual reachability (the definition) does instead of Tarjan.
fn knots(adj: &[Vec<usize>]) -> BTreeSet<Vec<usize>> {
    let reach: Vec<Paths> = (0..adj.len())
        .map(|v| paths_from(adj, v, |_| true))
        .collect();
    let both = |v: usize, u: usize| reach[v].contains_key(&u) && reach[u].contains_key(&v);
    let knot = |v: usize| (0..adj.len()).filter(|&u| both(v, u)).collect::<Vec<_>>();
    (0..adj.len()).map(knot).filter(|k| k.len() > 1).collect()
}

fn chain<'a>(labels: impl Iterator<Item = &'a str>) -> String {
    labels.collect::<Vec<_>>().join(" -> ")
}

/// One message per knot: its shortest circle through its first member, each arrow's detail
/// lines, and all members when the knot is larger than that circle.
fn circles(
    kind: &str,
    labels: &[&str],
    arrows: &BTreeMap<(usize, usize), Vec<String>>,
) -> Vec<String> {
    let adj = adjacency(labels.len(), arrows.keys().copied());
    let mut out = Vec::new();
    for knot in knots(&adj) {
        let start = knot[0];
        let paths = paths_from(&adj, start, |u| knot.contains(&u));
        let back = knot.iter().filter(|&&v| adj[v].contains(&start));
        let mut circle = back
            .map(|v| paths[v].clone())
            .min_by_key(Vec::len)
            .unwrap_or_default();
        circle.push(start);
        let mut lines = vec![format!(
            "{kind} circle: {}",
            chain(circle.iter().map(|&v| labels[v]))
        )];
        for pair in circle.windows(2) {
            lines.extend(arrows[&(pair[0], pair[1])].iter().cloned());
        }
        if knot.len() >= circle.len() {
            let all: Vec<&str> = knot.iter().map(|&v| labels[v]).collect();
            lines.push(format!(
                "(one circle of a knot of {}: {})",
                all.len(),
                all.join(", ")
            ));
        }
        out.push(lines.join("\n    "));
    }
    out
}

fn takes(tree: &Tree, from: usize, to: usize) -> String {
    let names: Vec<&str> = tree.edges[&(from, to)].iter().map(String::as_str).collect();
    let (a, b) = (&tree.files[from].rel, &tree.files[to].rel);
    format!("{a} -> {b} takes {}", names.join(", "))
}

fn file_circles(tree: &Tree) -> Vec<String> {
    let labels: Vec<&str> = tree.files.iter().map(|f| f.rel.as_str()).collect();
    let arrows = tree
        .edges
        .keys()
        .map(|&(a, b)| ((a, b), vec![takes(tree, a, b)]));
    circles("file", &labels, &arrows.collect())
}

/// Circles between top-level modules (a.rs with all of a/); the root files belong to none.
fn module_circles(tree: &Tree) -> Vec<String> {
    let top = |f: usize| tree.files[f].module.first().map(String::as_str);
    let labels: Vec<&str> = (0..tree.files.len())
        .filter_map(top)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let id = |f: usize| top(f).and_then(|m| labels.binary_search(&m).ok());
    let mut arrows: BTreeMap<(usize, usize), Vec<String>> = BTreeMap::new();
    for &(f, t) in tree.edges.keys() {
        if let (Some(a), Some(b)) = (id(f), id(t)) {
            if a != b {
                arrows.entry((a, b)).or_default().push(takes(tree, f, t));
            }
        }
    }
    circles("module", &labels, &arrows)
}

/// Whether a module path lies in `prefix` ("a" or "a::b"), compared whole segment by segment.
fn in_module(module: &[String], prefix: &str) -> bool {
    let want: Vec<&str> = prefix.split("::").collect();
    module.len() >= want.len() && module.iter().zip(&want).all(|(m, w)| m == w)
}

fn core_violations(tree: &Tree, core: &[&str], modules: &[&str], crates: &[&str]) -> Vec<String> {
    let adj = adjacency(tree.files.len(), tree.edges.keys().copied());
    let mut out = Vec::new();
    for name in core {
        let Some(start) = tree.files.iter().position(|f| f.rel == *name) else {
            out.push(format!(
                "PURE_CORE names src/{name}, which does not exist: update the list"
            ));
            continue;
        };
        for (&f, path) in &paths_from(&adj, start, |_| true) {
            let (file, mut route) = (&tree.files[f], vec![String::new()]);
            if f != start {
                let rels = path.iter().map(|&v| tree.files[v].rel.as_str());
                route = vec![format!(", reached by {}", chain(rels))];
                route.extend(path.windows(2).map(|p| takes(tree, p[0], p[1])));
            }
            let (rel, route) = (&file.rel, route.join("\n    "));
            for m in modules.iter().filter(|m| in_module(&file.module, m)) {
                out.push(format!(
                    "pure core src/{name}: src/{rel} is in shell module `{m}`{route}"
                ));
            }
            for krate in crates {
                if let Some((_, line)) = file.roots.iter().find(|(r, _)| r == krate) {
                    out.push(format!(
                        "pure core src/{name}: src/{rel}:{line} names crate `{krate}`{route}"
                    ));
                }
            }
        }
    }
    out
}

fn mqtt_crate_outside_home(tree: &Tree) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let outside = tree
        .files
        .iter()
        .filter(|f| !in_module(&f.module, MQTT_HOME));
    for file in outside {
        for (_, line) in file.roots.iter().filter(|(r, _)| r == MQTT_CRATE) {
            let at = format!("src/{}:{line}", file.rel);
            let msg = format!("{at} names `{MQTT_CRATE}`, which only src/{MQTT_HOME}/ may use");
            if out.last() != Some(&msg) {
                out.push(msg);
            }
        }
    }
    out
}

// ---- the checks themselves, on synthetic trees ----

mod selftest {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Removes a scratch tree, even when the check under test panics.
    struct Cleanup(PathBuf);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Writes the files of `spec` (each after a `== path` line) into a fresh temporary
    /// directory and analyses them.
    fn analyse(spec: &str) -> Tree {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("gscluster-layout-{}-{n}", std::process::id());
        let dir = Cleanup(std::env::temp_dir().join(name));
        let _ = fs::remove_dir_all(&dir.0);
        for file in spec.split("== ").skip(1) {
            let (rel, text) = file.split_once('\n').expect("a file name line");
            let path = dir.0.join(rel);
            fs::create_dir_all(path.parent().expect("a parent")).expect("create a directory");
            fs::write(&path, text).expect("write a file");
        }
        load(&dir.0)
    }

    /// What `from` imports, one "file: names" per imported file.
    fn imports(tree: &Tree, from: &str) -> Vec<String> {
        let mut out = Vec::new();
        for ((f, t), names) in &tree.edges {
            if tree.files[*f].rel == from {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                out.push(format!("{}: {}", tree.files[*t].rel, names.join(", ")));
            }
        }
        out
    }

    const NONE: [&str; 0] = [];

    #[test]
    fn finds_a_circle_between_two_files() {
        let tree = analyse(
            "
== lib.rs
pub mod a;
== a/mod.rs
pub mod child;
use crate::a::child::Y;
pub struct X;
== a/child.rs
use super::X;
pub struct Y;
",
        );
        let want = "file circle: a/child.rs -> a/mod.rs -> a/child.rs
    a/child.rs -> a/mod.rs takes X
    a/mod.rs -> a/child.rs takes Y";
        assert_eq!(file_circles(&tree), [want]);
        assert_eq!(module_circles(&tree), NONE, "both files are module a");
    }

    #[test]
    fn finds_a_circle_between_top_level_modules() {
        let tree = analyse(
            "
== lib.rs
pub mod a;
pub mod b;
== a.rs
pub mod one;
pub struct U;
== a/one.rs
pub fn f() -> crate::b::two::T { todo!() }
== b/mod.rs
pub mod two;
== b/two.rs
use crate::a::U;
pub struct T(U);
",
        );
        assert_eq!(file_circles(&tree), NONE);
        let want = "module circle: a -> b -> a
    a/one.rs -> b/two.rs takes T
    b/two.rs -> a.rs takes U";
        assert_eq!(module_circles(&tree), [want]);
    }

    #[test]
    fn finds_the_core_reaching_the_shell() {
        let tree = analyse(
            r#"
== lib.rs
pub mod middle;
pub mod mqtt;
pub mod pure;
pub mod spawner;
== pure.rs
use crate::middle::M;
const NOTE: &str = "tokio::spawn";
== middle.rs
pub struct M(crate::mqtt::conn::C);
== mqtt/mod.rs
pub mod conn;
== mqtt/conn.rs
pub struct C;
== spawner.rs
// no runtime here
pub fn go() {
    tokio::spawn(async {});
}
"#,
        );
        let reach = "pure core src/pure.rs: src/mqtt/conn.rs is in shell module `mqtt`, \
                     reached by pure.rs -> middle.rs -> mqtt/conn.rs
    pure.rs -> middle.rs takes M
    middle.rs -> mqtt/conn.rs takes C";
        let spawn = "pure core src/spawner.rs: src/spawner.rs:3 names crate `tokio`";
        let gone = "PURE_CORE names src/gone.rs, which does not exist: update the list";
        let core = ["pure.rs", "spawner.rs", "gone.rs"];
        let found = core_violations(&tree, &core, &["mqtt"], &["tokio"]);
        assert_eq!(found, [reach, spawn, gone]);
    }

    #[test]
    fn flags_rumqttc_only_in_code_outside_mqtt() {
        let tree = analyse(
            r##"
== lib.rs
pub mod bad;
pub mod mqtt;
== mqtt/mod.rs
use rumqttc::QoS;
== bad.rs
//! Talks of rumqttc::QoS in prose only. /* rumqttc::QoS */
/* a /* nested */ rumqttc::QoS */
const A: &str = "rumqttc::QoS \" rumqttc::x";
const B: &str = r#"a "quoted" rumqttc::QoS"#;
const C: &[u8] = br"rumqttc::QoS";
const Q: char = '"';
fn pick<'a>(x: &'a str, _y: &'a str) -> &'a str { x }
#[cfg(test)]
mod tests {
    use rumqttc::QoS;
    fn brace() -> &'static str { "}" }
}
fn level() -> rumqttc::QoS {
    rumqttc::QoS::AtLeastOnce
}
"##,
        );
        let want =
            |line| format!("src/bad.rs:{line} names `rumqttc`, which only src/mqtt/ may use");
        assert_eq!(mqtt_crate_outside_home(&tree), [want(13), want(14)]);
    }

    #[test]
    fn mod_lines_are_no_edges_and_nested_uses_resolve() {
        let tree = analyse(
            "
== lib.rs
pub mod a;
pub mod d;
pub mod user;
pub mod user2;
== a/mod.rs
pub mod b;
pub mod c;
== a/b.rs
pub fn x() {}
== a/c.rs
pub struct C;
== d.rs
mod inner;
pub use inner::Z;
== d/inner.rs
pub struct Z;
== user.rs
use crate::{a::{b, c}, d};
fn f() { b::x(); }
== user2.rs
use crate::a::{self};
fn g() { a::b::x(); }
",
        );
        assert_eq!(imports(&tree, "lib.rs"), NONE);
        assert_eq!(imports(&tree, "a/mod.rs"), NONE);
        let user = ["a/b.rs: b, x", "a/c.rs: c", "d.rs: d"];
        assert_eq!(imports(&tree, "user.rs"), user);
        assert_eq!(imports(&tree, "user2.rs"), ["a/b.rs: x", "a/mod.rs: a"]);
        assert_eq!(imports(&tree, "d.rs"), ["d/inner.rs: Z"]);
    }
}
