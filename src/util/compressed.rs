//! Log files given by name (`run --once FILES`, `push < FILE`, `test-plugin`) read whether or not
//! logrotate compressed them: gzip is recognised by its content, not its name, and decompressed
//! as it is read.
//!
//! Why a pipe: the line readers take a file descriptor (they wait on it for input, and show a
//! progress bar for regular files), so a compressed file is decoded on a thread of its own into
//! a pipe, whose reading end stands in for the file. Memory stays at the pipe's buffer and the
//! decoder's window, whatever the file's size.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The pipes compressed files are being decoded into, by the pipe's identity (device and
/// inode): how many compressed bytes the decoder has taken, and the compressed file's size.
/// A progress bar over such a pipe finds its numbers here.
type Decoding = Vec<((u64, u64), Arc<AtomicU64>, u64)>;
static DECODING: Mutex<Decoding> = Mutex::new(Vec::new());

fn identity(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    let st = rustix::fs::fstat(fd).ok()?;
    Some((st.st_dev, st.st_ino))
}

/// For the reading end of a pipe a compressed file is decoded into: the compressed bytes
/// decoded so far, and the compressed size.
pub fn decoding(fd: BorrowedFd<'_>) -> Option<(Arc<AtomicU64>, u64)> {
    let id = identity(fd)?;
    let list = DECODING.lock().unwrap_or_else(|e| e.into_inner());
    list.iter()
        .find(|(i, _, _)| *i == id)
        .map(|(_, read, total)| (read.clone(), *total))
}

/// Removes a pipe from [`DECODING`] when its decoder ends.
struct Forget(Option<(u64, u64)>);

impl Drop for Forget {
    fn drop(&mut self) {
        let mut list = DECODING.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|(i, _, _)| Some(*i) != self.0);
    }
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Set when a compressed input could not be read to its end (corrupt, or cut short): the
/// command that read it says so in its exit code, after what could be read was processed.
static INPUT_FAILED: AtomicBool = AtomicBool::new(false);

/// Whether some compressed input of this process ended in an error (already logged).
pub fn input_failed() -> bool {
    INPUT_FAILED.load(Ordering::SeqCst)
}

/// For a command's exit: an error if some compressed input could not be read to its end, after
/// what it held was processed.
pub fn read_whole() -> anyhow::Result<()> {
    if input_failed() {
        anyhow::bail!(
            "a compressed input could not be read to its end (see above); its lines up to there were processed"
        );
    }
    Ok(())
}

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Gzip,
    /// Compressed in a way loglines does not decode; the name of the tool that does.
    Other(&'static str),
}

/// The kind of data that starts with `head`.
pub fn kind_of(head: &[u8]) -> Kind {
    match head {
        [0x1f, 0x8b, ..] => Kind::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Kind::Other("zstd"),
        [b'B', b'Z', b'h', ..] => Kind::Other("bzip2"),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Kind::Other("xz"),
        _ => Kind::Plain,
    }
}

/// `file` (named `name` in messages) as plain text to read: itself, or for gzip a pipe its
/// decoded text flows through. The file is looked at from its current offset without moving
/// it, so standard input redirected from a file works too; a pipe or terminal is taken as
/// plain text (decompress into it: `zcat FILE | ...`).
pub fn open_text(file: File, name: &Path) -> io::Result<File> {
    let at = rustix::fs::tell(&file).unwrap_or(0);
    let mut head = [0u8; 6];
    let n = match file.read_at(&mut head, at) {
        Ok(n) => n,
        // Not seekable (a pipe, a terminal): read as it comes.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::SPIPE.raw_os_error()) => {
            return Ok(file)
        }
        Err(e) => return Err(e),
    };
    match kind_of(&head[..n]) {
        Kind::Plain => Ok(file),
        Kind::Gzip => decode_into_pipe(file, name),
        Kind::Other(tool) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is compressed with {tool}, which loglines does not read; decompress it into a pipe (e.g. `{tool} -dc {} | loglines push --section NAME`) or give the uncompressed file",
                name.display(),
                name.display()
            ),
        )),
    }
}

/// Starts the thread that decodes gzip `file` into a new pipe; the pipe's reading end.
fn decode_into_pipe(file: File, name: &Path) -> io::Result<File> {
    let (read, write) = rustix::pipe::pipe().map_err(io::Error::from)?;
    let name = name.display().to_string();
    let at = rustix::fs::tell(&file).unwrap_or(0);
    let total = file
        .metadata()
        .map(|m| m.len().saturating_sub(at))
        .unwrap_or(0);
    let taken = Arc::new(AtomicU64::new(0));
    let id = identity(read.as_fd());
    if let Some(id) = id {
        let mut list = DECODING.lock().unwrap_or_else(|e| e.into_inner());
        list.push((id, taken.clone(), total));
    }
    std::thread::Builder::new()
        .name("gunzip".into())
        .spawn(move || {
            // The pipe's identity may be given to another pipe once this one is closed.
            let _forget = Forget(id);
            let mut out = File::from(write);
            let counted = Counting {
                inner: file,
                read: taken,
            };
            // MultiGzDecoder: a .gz file may hold several members one after the other (files
            // concatenated, or appended to); each is read.
            let mut decoder = flate2::read::MultiGzDecoder::new(io::BufReader::new(counted));
            let mut buf = vec![0u8; 64 * 1024];
            let mut done: u64 = 0;
            loop {
                let n = match decoder.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        INPUT_FAILED.store(true, Ordering::SeqCst);
                        log::error!(
                            "{name}: the gzip data cannot be read after {done} bytes of text: {e}; the lines before were read, the rest of the file was not"
                        );
                        return;
                    }
                };
                // The reader went away (a stop, or an error on its side): nothing to do.
                if out.write_all(&buf[..n]).is_err() {
                    return;
                }
                done += n as u64;
            }
        })?;
    Ok(File::from(read))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(p).unwrap();
            out.extend(e.finish().unwrap());
        }
        out
    }

    fn read_all(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log.2.gz");
        std::fs::write(&path, bytes).unwrap();
        let mut f = open_text(File::open(&path).unwrap(), &path)?;
        let mut out = Vec::new();
        f.read_to_end(&mut out).unwrap();
        Ok(out)
    }

    #[test]
    fn gzip_is_decoded_by_content_every_member_of_it() {
        let text = b"line 1\nline 2\n".repeat(10_000);
        assert_eq!(read_all(&gzip(&[&text])).unwrap(), text);
        assert_eq!(
            read_all(&gzip(&[b"a\n", b"b\n", b"c\n"])).unwrap(),
            b"a\nb\nc\n"
        );
        // Plain text is read as it is, whatever the name.
        assert_eq!(read_all(b"plain\n").unwrap(), b"plain\n");
        assert_eq!(read_all(b"").unwrap(), b"");
    }

    #[test]
    fn other_compressions_are_named_with_how_to_read_them() {
        let e = read_all(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap_err();
        assert!(e.to_string().contains("compressed with zstd"), "{e}");
        assert!(e.to_string().contains("zstd -dc"), "{e}");
        assert_eq!(kind_of(b"BZh91AY"), Kind::Other("bzip2"));
        assert_eq!(kind_of(b"\xfd7zXZ\x00"), Kind::Other("xz"));
    }

    #[test]
    fn a_cut_gzip_file_gives_what_it_holds_and_is_reported() {
        let text = b"x\n".repeat(100_000);
        let whole = gzip(&[&text]);
        let cut = &whole[..whole.len() / 2];
        let got = read_all(cut).unwrap();
        assert!(!got.is_empty() && got.len() < text.len());
        assert!(input_failed());
    }
}
