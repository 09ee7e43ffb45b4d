//! The progress bar of a replay (`loglines push < FILE`, `run --once FILE...`, `test-plugin`):
//! shown on a terminal when the input's size is known, that is for a regular file, or for a
//! compressed file being decoded, whose bar follows the compressed bytes the decoder has
//! taken (the size of the text inside a gzip file is not known until its end).

use crate::util::compressed;
use std::io::IsTerminal;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A bar over one input.
pub struct Bar {
    bar: indicatif::ProgressBar,
    /// For a compressed file: the compressed bytes decoded so far, which the bar shows.
    decoded: Option<Arc<AtomicU64>>,
}

impl Bar {
    /// A bar over the rest of the input `fd`, when standard error is a terminal (someone is
    /// watching) and the input has more than `min_bytes` to go.
    pub fn over(fd: BorrowedFd<'_>, min_bytes: u64) -> Option<Bar> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let (len, decoded) = match compressed::decoding(fd) {
            Some((decoded, total)) => (total, Some(decoded)),
            None => {
                let st = rustix::fs::fstat(fd).ok()?;
                let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
                if kind != rustix::fs::FileType::RegularFile {
                    return None;
                }
                let at = rustix::fs::tell(fd).unwrap_or(0);
                ((st.st_size as u64).saturating_sub(at), None)
            }
        };
        if len <= min_bytes {
            return None;
        }
        let bar = indicatif::ProgressBar::new(len);
        let template = match decoded {
            Some(_) => "{bar:40} {bytes}/{total_bytes} compressed {bytes_per_sec} eta {eta}",
            None => "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        };
        bar.set_style(indicatif::ProgressStyle::with_template(template).ok()?);
        Some(Bar { bar, decoded })
    }

    /// After `n` more bytes of text were read.
    pub fn advance(&self, n: u64) {
        match &self.decoded {
            Some(d) => self.bar.set_position(d.load(Ordering::Relaxed)),
            None => self.bar.inc(n),
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
