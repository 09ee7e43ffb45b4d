//! Generated Apache combined-log lines for end-to-end tests and benchmarks.
//!
//! Line `i` is unique and recognisable: a download line requests `/id/eprint/<i>/1/paper.pdf`
//! (so the tracker receives `rft.artnum = oai:repo.example.ac.uk:<i>`), any other line requests
//! `/static/style.css?n=<i>`. A test can therefore tell, for every line, where it must arrive and
//! whether it arrived twice.

use std::fmt::Write as _;

/// One line in `download_every` is a file download (20 gives the realistic 5% mix).
pub fn line(i: u64, download_every: u64) -> String {
    let ip = format!("192.0.{}.{}", (i / 250) % 250, i % 250 + 1);
    let (sec, min, hour) = (i % 60, (i / 60) % 60, (i / 3600) % 24);
    let time = format!("27/Nov/2026:{hour:02}:{min:02}:{sec:02} +0000");
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    if i.is_multiple_of(download_every) {
        format!("{ip} - - [{time}] \"GET /id/eprint/{i}/1/paper.pdf HTTP/1.1\" 200 1048576 \"https://repo.example.ac.uk/id/eprint/{i}/\" \"{ua}\"")
    } else {
        format!("{ip} - - [{time}] \"GET /static/style.css?n={i} HTTP/1.1\" 200 4096 \"https://repo.example.ac.uk/\" \"{ua}\"")
    }
}

/// Lines `from..to`, each followed by a newline.
pub fn lines(from: u64, to: u64, download_every: u64) -> String {
    let mut s = String::with_capacity(((to - from) * 200) as usize);
    for i in from..to {
        let _ = writeln!(s, "{}", line(i, download_every));
    }
    s
}

/// The line number a generated line or tracker request carries, if any.
pub fn number_of(text: &str) -> Option<u64> {
    let after = if let Some(p) = text.find("/id/eprint/") {
        &text[p + "/id/eprint/".len()..]
    } else if let Some(p) = text.find("style.css?n=") {
        &text[p + "style.css?n=".len()..]
    } else if let Some(p) = text.find("oai:repo.example.ac.uk:") {
        &text[p + "oai:repo.example.ac.uk:".len()..]
    } else if let Some(p) = text.find("oai%3Arepo.example.ac.uk%3A") {
        &text[p + "oai%3Arepo.example.ac.uk%3A".len()..]
    } else {
        return None;
    };
    let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}
