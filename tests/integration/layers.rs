//! The shape of the house, checked: every top-level module of `src/` sits in a layer, and imports
//! only from its own layer or the layers below (ARCHITECTURE.md explains each). Between modules of
//! one layer the imports must not form a circle. Test code (`tests.rs`, `mod tests`) is exempt.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Lowest first: values and pure code; persistence mechanisms; the domain; the edges; the app.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "values and pure code",
        &[
            "clock",
            "config",
            "domain",
            "entities",
            "fingerprint",
            "links",
            "random",
            "sealing",
            "signature",
            "templates",
            "twilio",
        ],
    ),
    ("persistence mechanisms", &["audit", "db", "inbox", "outbox", "tokens"]),
    ("the domain", &["access", "accounts", "identity", "invitations", "shops"]),
    ("the edges", &["delivery", "health", "host", "manifest", "oidc", "portal", "recover"]),
    ("the app", &["app", "cli", "maintenance", "metrics", "telemetry"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, modules)| modules.contains(&module))
}

/// One import of a module by another: where it is written, and what it names.
#[derive(Debug)]
struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
}

#[test]
fn every_module_imports_only_from_its_layer_or_below() {
    let imports = imports_of(&src_dir());
    let mut wrong = Vec::new();
    for import in &imports {
        let from = layer_of(&import.from)
            .unwrap_or_else(|| panic!("{} is in no layer: add it to LAYERS", import.from));
        let to = layer_of(&import.to).unwrap_or_else(|| {
            panic!("{}:{} names {}, which is in no layer", import.file, import.line, import.to)
        });
        if to > from {
            wrong.push(format!(
                "{}:{}: {} ({}) imports {} ({})",
                import.file, import.line, import.from, LAYERS[from].0, import.to, LAYERS[to].0
            ));
        }
    }
    assert!(wrong.is_empty(), "imports that climb a layer:\n{}", wrong.join("\n"));
}

#[test]
fn the_modules_of_one_layer_do_not_import_each_other_in_a_circle() {
    let imports = imports_of(&src_dir());
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for import in &imports {
        graph.entry(&import.from).or_default().insert(&import.to);
    }
    for start in graph.keys() {
        if let Some(path) = circle_through(&graph, start) {
            panic!("a circle of imports: {}", path.join(" → "));
        }
    }
}

#[test]
fn the_checker_sees_grouped_nested_and_relative_imports() {
    let text = "use crate::{\n    clock::Clock,\n    host::{a, b},\n};\nfn f() { crate::portal::x(); }\n// crate::app is a comment\nuse super::super::db::Database;\n#[cfg(test)]\nmod tests { use crate::cli; }\n";
    let found = imports_in(text, &["shops".into(), "records".into(), "inner".into()]);
    let names: Vec<(&str, usize)> = found.iter().map(|(to, line)| (to.as_str(), *line)).collect();
    assert_eq!(names, [("clock", 2), ("host", 3), ("portal", 5), ("shops", 7)]);
    let from_top = imports_in("use super::db::Database;\n", &["shops".into()]);
    assert_eq!(from_top, [("db".to_owned(), 1)]);
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn imports_of(src: &Path) -> Vec<Import> {
    let mut files = Vec::new();
    collect_rust_files(src, &mut files);
    assert!(files.len() > 20, "the checker found only {} files under {}", files.len(), src.display());
    let mut imports = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src").to_string_lossy().replace('\\', "/");
        if relative.ends_with("tests.rs") || relative == "main.rs" || relative == "lib.rs" {
            continue;
        }
        let module = module_path(&relative);
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (to, line) in imports_in(&text, &module) {
            if to != module[0] {
                imports.push(Import { file: format!("src/{relative}"), line, from: module[0].clone(), to });
            }
        }
    }
    imports
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `host/actions/submit.rs` → `[host, actions, submit]`; `host/mod.rs` → `[host]`.
fn module_path(relative: &str) -> Vec<String> {
    let mut parts: Vec<String> = relative.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The top-level modules a file names through `crate::` or `super::`, with their lines; comments
/// and a trailing `#[cfg(test)] mod tests` are skipped.
fn imports_in(text: &str, module: &[String]) -> Vec<(String, usize)> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut found = Vec::new();
    let mut group = Group { depth: 0, expecting_item: false };
    for (index, raw_line) in code.lines().enumerate() {
        let line = raw_line.split("//").next().unwrap_or_default();
        let line_number = index + 1;
        // Inside `use crate::{ … }` spread over lines: each top-level item names a module.
        let mut search = scan_group(line, &mut group, line_number, &mut found);
        while let Some(at) = [search.find("crate::"), search.find("super::")].into_iter().flatten().min() {
            let before_ok =
                at == 0 || !search[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$');
            let (mut path, mut tail): (Vec<String>, &str) = if search[at..].starts_with("crate::") {
                (Vec::new(), &search[at + 7..])
            } else {
                let mut base = module.to_vec();
                let mut tail = &search[at..];
                while let Some(next) = tail.strip_prefix("super::") {
                    base.pop();
                    tail = next;
                }
                (base, tail)
            };
            if !before_ok {
                search = &search[at + 7..];
                continue;
            }
            if let Some(group_text) = tail.strip_prefix('{') {
                if path.is_empty() {
                    group = Group { depth: 1, expecting_item: true };
                    search = scan_group(group_text, &mut group, line_number, &mut found);
                    continue;
                }
                // `super::{a, b}` inside a module stays inside its top-level module.
                found.push((path[0].clone(), line_number));
                search = group_text;
                continue;
            }
            let ident: String = tail.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            tail = &tail[ident.len()..];
            if path.is_empty() {
                path.push(ident);
            }
            found.push((path[0].clone(), line_number));
            search = tail;
        }
    }
    found
}

/// Where a scan stands inside `use crate::{ … }`.
struct Group {
    depth: usize,
    expecting_item: bool,
}

/// Reads `text` as the inside of an open `crate::{` group, recording each top-level item; returns
/// what follows the group's end (or nothing, when it goes on past this line).
fn scan_group<'t>(
    text: &'t str,
    group: &mut Group,
    line: usize,
    found: &mut Vec<(String, usize)>,
) -> &'t str {
    let mut rest = text;
    while group.depth > 0 {
        let trimmed = rest.trim_start();
        let Some(c) = trimmed.chars().next() else { return "" };
        match c {
            '{' => group.depth += 1,
            '}' => group.depth -= 1,
            ',' if group.depth == 1 => group.expecting_item = true,
            _ if group.depth == 1 && group.expecting_item && (c.is_alphabetic() || c == '_') => {
                let ident: String =
                    trimmed.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if ident != "self" {
                    found.push((ident.clone(), line));
                }
                group.expecting_item = false;
                rest = &trimmed[ident.len()..];
                continue;
            }
            _ => {}
        }
        rest = &trimmed[c.len_utf8()..];
    }
    rest
}

fn circle_through<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>, start: &'a str) -> Option<Vec<&'a str>> {
    fn walk<'a>(
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        start: &'a str,
        at: &'a str,
        path: &mut Vec<&'a str>,
        seen: &mut BTreeSet<&'a str>,
    ) -> bool {
        for &next in graph.get(at).into_iter().flatten() {
            if next == start {
                path.push(next);
                return true;
            }
            if seen.insert(next) {
                path.push(next);
                if walk(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start];
    let mut seen = BTreeSet::new();
    walk(graph, start, start, &mut path, &mut seen).then_some(path)
}
