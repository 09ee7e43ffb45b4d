//! The 2010 tool's configuration file as the tests feed it to loglines.

/// tests/data/loglines-original.cfg with only what a site must change to move to loglines: its
/// `command` lines, and its repository plugin, which becomes `ora_plugin`.
pub fn modernised_original(ora_plugin: &str) -> String {
    include_str!("../../data/loglines-original.cfg")
        .lines()
        .map(|l| match l.trim() {
            "command = ./logfilewatcher.py" => "command = loglines watch".to_string(),
            "command = ./broker.py" => "command = loglines broker".to_string(),
            "command = ./pirus2.py" => "command = loglines worker".to_string(),
            "command = ./logfromqueue.py" => "command = loglines filelog".to_string(),
            "repository_plugin = plugins.ora_utils" => {
                format!("repository_plugin = {ora_plugin}")
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
