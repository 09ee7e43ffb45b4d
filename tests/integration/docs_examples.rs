//! docs/plugins.md stays true: every ```lua example in it runs in a plugin VM against the
//! configuration the page shows, and every function of the `loglines` library appears in one.

use crate::support::plugin as plugin_util;

use loglines::config::ini;
use loglines::plugin::{Plugin, PluginSpec};
use plugin_util::{Dir, HttpStub, NO_HOOKS};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn page() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/plugins.md");
    std::fs::read_to_string(path).unwrap()
}

/// The fenced blocks whose info string is exactly `lang`, in order.
fn blocks(md: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        match &mut current {
            None => {
                if line.trim_end() == format!("```{lang}") {
                    current = Some(String::new());
                }
            }
            Some(body) => {
                if line.trim_end() == "```" {
                    out.push(current.take().unwrap());
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    out
}

/// The configuration block the page says the examples run against.
fn example_config(md: &str) -> String {
    let from = md
        .find("They run against this configuration:")
        .expect("the page names the examples' configuration");
    blocks(&md[from..], "ini")
        .into_iter()
        .next()
        .expect("an ini block follows")
}

/// A Solr stand-in for the http_get example: answers every request with one result.
fn solr() -> HttpStub {
    HttpStub::start(|_| {
        let body = r#"{"response": {"numFound": 1, "docs": [{"id": "uuid:1234"}]}}"#;
        ("200 OK", body.to_string())
    })
}

#[test]
fn every_lua_example_runs() {
    let md = page();
    let cfg = ini::parse(Path::new("loglines.cfg"), &example_config(&md)).unwrap();
    let cfg = Arc::new(cfg);
    let solr = solr();
    let examples = blocks(&md, "lua");
    assert!(
        examples.len() >= 12,
        "found only {} lua examples",
        examples.len()
    );
    let d = Dir::new();
    for (i, code) in examples.iter().enumerate() {
        // The page's look-up example names a Solr on the usual port; point it at ours.
        let code = code.replace("http://127.0.0.1:8983", &solr.addr);
        let path = d.write(&format!("example{i}.lua"), &format!("{NO_HOOKS}\n{code}"));
        let spec = PluginSpec {
            config: cfg.clone(),
            ..PluginSpec::standalone(&path, "worker_pirus2")
        };
        if let Err(e) = Plugin::load(spec) {
            panic!("example {} of docs/plugins.md fails: {e}\n{code}", i + 1);
        }
    }
    assert_eq!(
        solr.requests().len(),
        1,
        "the http_get example reached the server"
    );
}

#[test]
fn every_library_function_has_an_example() {
    let md = page();
    let examples = blocks(&md, "lua").join("\n");
    // Ask a plugin VM for the library's contents, so a new function cannot go undocumented.
    let d = Dir::new();
    let path = d.write(
        "names.lua",
        &format!(
            "{NO_HOOKS}\nlocal names = {{}}\n\
             for k, v in pairs(loglines) do\n\
               if type(v) == 'table' then\n\
                 for k2 in pairs(v) do names[#names + 1] = k .. '.' .. k2 end\n\
               else\n\
                 names[#names + 1] = k\n\
               end\n\
             end\n\
             table.sort(names)\n\
             NAMES = table.concat(names, ' ')\n\
             function parseline() return {{}} end\n\
             function get_openurl_params() return {{names = NAMES}} end"
        ),
    );
    let mut p = Plugin::load(PluginSpec::standalone(&path, "w")).unwrap();
    let loglines::plugin::Outcome::Eligible(params) = p.process("{}").unwrap() else {
        panic!("the names come back as a parameter")
    };
    let names = params[0].1.clone();
    let names: Vec<&str> = names.split(' ').collect();
    assert!(names.len() >= 18, "{names:?}");
    for name in names {
        assert!(
            examples.contains(&format!("loglines.{name}")),
            "loglines.{name} has no example in docs/plugins.md"
        );
    }
}
