//! The on-disk store of compiled CUDA kernels: NVRTC's PTX, kept between runs so that a
//! script staged on the GPU a second time skips the compiler (about 100 ms a module).
//!
//! One file per kernel, named by a hash of its key (NVRTC's version, the compile options and
//! the whole source). The file holds the key as well as the PTX, and an entry is used only
//! when the stored key equals the asked one byte for byte, so a hash collision or a stale
//! file can only cost a compile, never run another kernel. Files are written atomically;
//! a damaged or foreign file is ignored (and the device recompiles when the driver refuses
//! the PTX). The folder is `MS_KERNEL_CACHE` if set (`off` turns the store off), else
//! `$XDG_CACHE_HOME/mindscript/kernels`, else `$HOME/.cache/mindscript/kernels`.

use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The first line of every entry: the format, so a future layout is never misread.
const MAGIC: &str = "mindscript-kernel 1\n";

/// Entries larger than this are not read (PTX of one module is a few hundred KB at most).
const MAX_ENTRY: u64 = 64 << 20;

/// Kernels kept as files in one folder.
#[derive(Debug)]
pub struct DiskKernelStore {
    dir: PathBuf,
}

impl DiskKernelStore {
    /// A store in `dir` (made on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DiskKernelStore { dir: dir.into() }
    }

    /// The store the environment asks for, if any (see the module's documentation).
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(dir) = var("MS_KERNEL_CACHE") {
            return (dir != "off").then(|| DiskKernelStore::new(dir));
        }
        let base = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache")))?;
        Some(DiskKernelStore::new(
            base.join("mindscript").join("kernels"),
        ))
    }

    fn path(&self, key: &str) -> PathBuf {
        // Two differently seeded hashes make a 128-bit name; the key inside the file is
        // what decides a hit.
        let hash = |seed: u64| {
            let mut h = std::hash::DefaultHasher::new();
            seed.hash(&mut h);
            key.hash(&mut h);
            h.finish()
        };
        self.dir
            .join(format!("{:016x}{:016x}.ptx", hash(1), hash(2)))
    }

    /// The PTX stored under `key`: `None` when there is no entry, or it is unreadable,
    /// too large, of another format or of another key.
    pub fn get(&self, key: &str) -> Option<String> {
        let file = std::fs::File::open(self.path(key)).ok()?;
        let mut text = String::new();
        file.take(MAX_ENTRY + 1).read_to_string(&mut text).ok()?;
        if text.len() as u64 > MAX_ENTRY {
            return None;
        }
        let rest = text.strip_prefix(MAGIC)?;
        let (len, rest) = rest.split_once('\n')?;
        let len: usize = len.parse().ok()?;
        let (stored_key, ptx) = (rest.get(..len)?, rest.get(len..)?);
        (stored_key == key).then(|| ptx.to_string())
    }

    /// Keeps `ptx` under `key`; a store that cannot write (read-only home, full disk)
    /// silently keeps nothing, since the cache only saves time.
    pub fn put(&self, key: &str, ptx: &str) {
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let _ = super::write_atomic(&self.path(key), |w| {
            w.write_all(MAGIC.as_bytes())?;
            writeln!(w, "{}", key.len())?;
            w.write_all(key.as_bytes())?;
            w.write_all(ptx.as_bytes())
        });
    }
}

impl devices::cuda::KernelStore for DiskKernelStore {
    fn load(&self, key: &str) -> Option<String> {
        self.get(key)
    }

    fn store(&self, key: &str, ptx: &str) {
        self.put(key, ptx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ms-kernels-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn entries_come_back_only_under_their_own_key() {
        let dir = scratch("keys");
        let store = DiskKernelStore::new(&dir);
        assert_eq!(store.get("k1"), None);
        store.put("k1", ".entry a");
        store.put("k2\nwith a newline", ".entry b");
        assert_eq!(store.get("k1").as_deref(), Some(".entry a"));
        assert_eq!(store.get("k2\nwith a newline").as_deref(), Some(".entry b"));
        assert_eq!(store.get("k3"), None);
        // A file renamed onto another key's name is another key's entry: not a hit.
        std::fs::copy(store.path("k1"), store.path("k3")).unwrap();
        assert_eq!(store.get("k3"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_entries_are_ignored() {
        let dir = scratch("damaged");
        let store = DiskKernelStore::new(&dir);
        store.put("key", ".entry fused");
        let path = store.path("key");
        let whole = std::fs::read(&path).unwrap();
        for cut in 0..whole.len() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let got = store.get("key");
            // A cut inside the PTX leaves a shorter PTX (the driver refuses it and the
            // device recompiles); a cut anywhere before it is no entry at all.
            let ptx_start = whole.len() - ".entry fused".len();
            if cut < ptx_start {
                assert_eq!(got, None, "cut at {cut}");
            } else {
                assert_eq!(got.as_deref(), Some(&".entry fused"[..cut - ptx_start]));
            }
        }
        for bad in [
            &b"\xff\xfe not text"[..],
            b"mindscript-kernel 1\n99999999999999999999\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert_eq!(store.get("key"), None);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_folder_keeps_nothing_and_fails_nothing() {
        let dir = scratch("unwritable");
        std::fs::write(&dir, b"a file where the folder should be").unwrap();
        let store = DiskKernelStore::new(dir.join("kernels"));
        store.put("key", ".entry x");
        assert_eq!(store.get("key"), None);
        std::fs::remove_file(&dir).unwrap();
    }
}
