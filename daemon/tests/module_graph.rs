//! The agent's modules depend on each other one way only: server -> conn ->
//! cmd -> policy/service/sign/http -> store, with agent and entry at the
//! bottom. A cycle would make a module impossible to understand or test
//! without the others, so the build fails on one.
//!
//! A top-level module is `src/X.rs` or `src/X/`; it uses `Y` when any of
//! its files names `crate::Y` outside its trailing `#[cfg(test)]` module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Module name -> the modules it names through `crate::`.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            rust_files(&p, files.entry(stem).or_default());
        } else if p.extension().is_some_and(|x| x == "rs") && stem != "main" && stem != "lib" {
            files.entry(stem).or_default().push(p);
        }
    }
    let names: BTreeSet<String> = files.keys().cloned().collect();
    files
        .iter()
        .map(|(m, fs)| {
            let mut uses = BTreeSet::new();
            for f in fs {
                let text = std::fs::read_to_string(f).unwrap();
                let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
                for (i, _) in code.match_indices("crate::") {
                    let rest = &code[i + "crate::".len()..];
                    let group = if let Some(inner) = rest.strip_prefix('{') {
                        inner.split('}').next().unwrap_or("")
                    } else {
                        rest
                    };
                    for part in group.split(',') {
                        let name: String = part
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if names.contains(&name) && name != *m {
                            uses.insert(name);
                        }
                        if !rest.starts_with('{') {
                            break;
                        }
                    }
                }
            }
            (m.clone(), uses)
        })
        .collect()
}

/// A path that leads from `from` back to itself, if there is one.
fn cycle_through(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    fn walk(
        g: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in &g[at] {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(g, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![from.to_string()];
    walk(g, from, from, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn the_agent_modules_import_each_other_without_a_cycle() {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(g.len() >= 10, "found too few modules to be checking the right tree: {g:?}");
    let shown: Vec<String> = g
        .iter()
        .map(|(m, u)| format!("{m} -> {}", u.iter().cloned().collect::<Vec<_>>().join(", ")))
        .collect();
    for m in g.keys() {
        if let Some(c) = cycle_through(&g, m) {
            panic!("import cycle: {}\n{}", c.join(" -> "), shown.join("\n"));
        }
    }
    // The layers the design promises.
    for bottom in ["entry", "random", "paths"] {
        assert!(g[bottom].is_empty(), "{bottom} must use no other module: {:?}", g[bottom]);
    }
    for (upper, lower) in
        [("store", "cmd"), ("policy", "store"), ("store", "agent"), ("http", "agent")]
    {
        assert!(!g[upper].contains(lower), "{upper} must not use {lower}");
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec!["a"])]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
            .collect();
    assert_eq!(cycle_through(&g, "a").unwrap(), ["a", "b", "c", "a"]);
    assert!(cycle_through(&g, "d").is_none());
}
