//! What a 2010 `loglines.cfg` says in its own terms, and what loglines says instead: the
//! programs its `command` lines run, the Python plugin modules its workers name, the PIRUS2
//! tracker it sent to, and the keys it used that loglines no longer needs. `check` accepts such
//! a file with one warning per difference; `loglines migrate` writes the modern file.

use crate::roles::RoleName;

/// The production IRUS tracker (UK), which replaced PIRUS2.
pub const IRUS_ENDPOINT: &str = "https://irus.jisc.ac.uk/counter/";
/// The IRUS test tracker: events sent there are checked, not counted.
pub const IRUS_TEST_ENDPOINT: &str = "https://irus.jisc.ac.uk/counter/test/";

/// The host of the PIRUS2 tracker the 2010 tool sent to; it no longer exists.
const PIRUS2_HOSTS: &[&str] = &["cranfield.ac.uk"];

/// The role a 2010 `command` line runs (`./pirus2.py`, `python /opt/loglines/broker.py`, ...).
pub fn program_role(command: &str) -> Option<RoleName> {
    let mut words = command.split_whitespace();
    let mut program = words.next()?;
    // `python pirus2.py`, `python2.6 ./broker.py`: the interpreter first.
    if basename(program).starts_with("python") {
        program = words.next()?;
    }
    let name = basename(program);
    RoleName::ALL.into_iter().find(|r| r.replaces() == name)
}

/// The shipped Lua plugin (a path relative to the configuration's folder) that does what a
/// 2010 plugin module did: `plugins.ora_utils` (or `ora_utils`) is `lua_plugins/ora.lua`.
pub fn plugin_for_module(value: &str) -> Option<&'static str> {
    if !is_python_module(value) {
        return None;
    }
    match value.rsplit('.').next()? {
        "ora_utils" => Some("lua_plugins/ora.lua"),
        _ => None,
    }
}

/// Whether `value` reads as a Python module name (`plugins.ora_utils`) rather than a path.
pub fn is_python_module(value: &str) -> bool {
    !value.is_empty()
        && !value.contains('/')
        && !value.ends_with(".lua")
        && value
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// Whether `url` is the 2010 PIRUS2 tracker's.
pub fn is_pirus2_endpoint(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return false;
    };
    let host = rest
        .split(['/', ':', '?'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    PIRUS2_HOSTS
        .iter()
        .any(|h| host == *h || host.ends_with(&format!(".{h}")))
}

/// What to say about a PIRUS2 endpoint.
pub fn pirus2_advice(url: &str) -> String {
    format!(
        "`{url}` is the 2010 PIRUS2 tracker, which no longer exists; send to IRUS: {IRUS_ENDPOINT} (UK; {IRUS_TEST_ENDPOINT} to test first), or the IRUS service your repository registered with"
    )
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_2010_programs_and_plugins_are_recognised() {
        assert_eq!(program_role("./pirus2.py"), Some(RoleName::Worker));
        assert_eq!(
            program_role("/opt/loglines/logfilewatcher.py"),
            Some(RoleName::Watch)
        );
        assert_eq!(program_role("python broker.py"), Some(RoleName::Broker));
        assert_eq!(
            program_role("python2.6 ./logfromqueue.py"),
            Some(RoleName::FileLog)
        );
        assert_eq!(program_role("loglines worker"), None);
        assert_eq!(program_role("./other.py"), None);
        assert_eq!(program_role(""), None);

        assert_eq!(
            plugin_for_module("plugins.ora_utils"),
            Some("lua_plugins/ora.lua")
        );
        assert_eq!(plugin_for_module("ora_utils"), Some("lua_plugins/ora.lua"));
        assert_eq!(plugin_for_module("lua_plugins/ora.lua"), None);
        assert_eq!(plugin_for_module("plugins.mine"), None);
        assert!(is_python_module("plugins.mine"));
        assert!(!is_python_module("mine.lua"));

        assert!(is_pirus2_endpoint(
            "http://cclibweb-4.dmz.cranfield.ac.uk/tracker/"
        ));
        assert!(!is_pirus2_endpoint(IRUS_ENDPOINT));
        assert!(!is_pirus2_endpoint("-"));
    }
}
