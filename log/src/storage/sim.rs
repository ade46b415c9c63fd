//! An in-memory disk with a page cache, for tests: power cuts and injected faults.
//!
//! Every file has two images: what the page cache holds (`data`, what reads see) and what the
//! device holds (`synced`, as of the last `sync_data`). Directory entries are likewise durable
//! only after `sync_dir`. [`SimStorage::power_cut`] throws the page cache away, optionally keeping
//! a torn prefix of unsynced appends (with or without garbage in it), and reverts every directory
//! to its last synced listing. Directories themselves are always durable (the log creates them
//! once, before anything that matters).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::{Storage, StorageFile};

/// Which operation a [`Fault`] fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOp {
    /// `write_all_at`.
    Write,
    /// `sync_data`.
    Sync,
    /// `sync_dir`.
    SyncDir,
    /// `rename`.
    Rename,
    /// `remove_file`.
    Remove,
    /// `open` with `create` of a file that does not exist yet.
    Create,
    /// `set_len`.
    SetLen,
    /// Any of the above.
    Any,
}

/// A failure to inject: the `nth` (0-based) matching operation from now fails with `kind`, and
/// with `persistent` every matching operation after it fails too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The operation to fail.
    pub op: FaultOp,
    /// How many matching operations succeed first.
    pub nth: u64,
    /// Whether the failure sticks.
    pub persistent: bool,
    /// The error kind returned (`Other` for EIO, `StorageFull` for ENOSPC).
    pub kind: io::ErrorKind,
}

impl Fault {
    /// An EIO on the `nth` matching operation, once.
    pub fn eio(op: FaultOp, nth: u64) -> Fault {
        Fault {
            op,
            nth,
            persistent: false,
            kind: io::ErrorKind::Other,
        }
    }
}

/// What a power cut leaves of the bytes written since the last sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Nothing: every file reverts to its synced image.
    DropUnsynced,
    /// A prefix of random length of each file's unsynced appends survives.
    TornPrefix {
        /// Seeds the prefix lengths.
        seed: u64,
    },
    /// As `TornPrefix`, and a random range inside the surviving part is zeroed or scrambled
    /// (sectors persisted out of order).
    TornGarbage {
        /// Seeds the lengths and the damage.
        seed: u64,
    },
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    inode_next: u64,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    locks: HashMap<PathBuf, u64>,
    lock_next: u64,
    faults: Vec<Fault>,
    ops: u64,
    power_off_after: Option<u64>,
    capacity_bytes: Option<u64>,
}

impl State {
    /// Counts a mutating operation and applies power-off and injected faults.
    fn mutate(&mut self, op: FaultOp) -> io::Result<()> {
        self.check_power()?;
        self.ops += 1;
        let mut fail = None;
        for fault in &mut self.faults {
            if fault.op == op || fault.op == FaultOp::Any {
                if fault.nth == 0 {
                    fail = Some(fault.kind);
                    if !fault.persistent {
                        fault.nth = u64::MAX; // spent
                    }
                    break;
                }
                fault.nth -= 1;
            }
        }
        self.faults.retain(|fault| fault.nth != u64::MAX);
        match fail {
            Some(kind) => Err(io::Error::new(kind, format!("injected {op:?} failure"))),
            None => Ok(()),
        }
    }

    fn check_power(&self) -> io::Result<()> {
        match self.power_off_after {
            Some(limit) if self.ops >= limit => Err(io::Error::other("simulated power loss")),
            _ => Ok(()),
        }
    }

    fn used_bytes(&self) -> u64 {
        let live: BTreeSet<u64> = self.names.values().copied().collect();
        live.iter()
            .map(|id| self.inodes[id].data.len() as u64)
            .sum()
    }

    fn inode(&mut self, id: u64) -> &mut Inode {
        self.inodes.get_mut(&id).expect("inodes are never freed")
    }
}

/// The in-memory test disk. Clones share the same disk.
#[derive(Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("SimStorage")
            .field("files", &state.names.len())
            .finish()
    }
}

impl SimStorage {
    /// An empty disk.
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    /// Adds a fault to inject.
    pub fn inject(&self, fault: Fault) {
        self.state.lock().faults.push(fault);
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Limits the bytes all files may hold together; writes past it fail with `StorageFull`
    /// after writing what fits. `None` removes the limit.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.state.lock().capacity_bytes = bytes;
    }

    /// Mutating operations (writes, syncs, creates, renames, removals, truncations) so far.
    pub fn op_count(&self) -> u64 {
        self.state.lock().ops
    }

    /// After `ops` more mutating operations, every operation fails as if the power went out,
    /// until [`SimStorage::power_cut`].
    pub fn power_off_after(&self, ops: u64) {
        let mut state = self.state.lock();
        state.power_off_after = Some(state.ops + ops);
    }

    /// Whether the power is (simulated) off.
    pub fn is_powered_off(&self) -> bool {
        self.state.lock().check_power().is_err()
    }

    /// Cuts the power: unsynced bytes and directory changes are lost as `damage` says; locks are
    /// released (the process died) and faults cleared. Then the power comes back.
    pub fn power_cut(&self, damage: Damage) {
        let mut state = self.state.lock();
        let mut rng = match damage {
            Damage::DropUnsynced => Rng(1),
            Damage::TornPrefix { seed } | Damage::TornGarbage { seed } => Rng(seed | 1),
        };
        state.names = state.durable_names.clone();
        let mut ids: Vec<u64> = state.inodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let inode = state.inode(id);
            let synced_len = inode.synced.len();
            let appended = inode.data.len() > synced_len && inode.data.starts_with(&inode.synced);
            let mut image = inode.synced.clone();
            if appended && damage != Damage::DropUnsynced {
                let extra = inode.data.len() - synced_len;
                let keep = rng.below(extra as u64 + 1) as usize;
                image.extend_from_slice(&inode.data[synced_len..synced_len + keep]);
                if matches!(damage, Damage::TornGarbage { .. }) && keep > 0 {
                    let start = synced_len + rng.below(keep as u64) as usize;
                    let end = start + 1 + rng.below((image.len() - start) as u64) as usize;
                    let zero = rng.below(2) == 0;
                    for byte in &mut image[start..end] {
                        *byte = if zero { 0 } else { rng.next() as u8 };
                    }
                }
            }
            inode.synced = image.clone();
            inode.data = image;
        }
        state.locks.clear();
        state.faults.clear();
        state.power_off_after = None;
    }

    /// A copy of a file's current (page cache) content, for tests that inspect or damage files.
    pub fn file_content(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        state
            .names
            .get(path)
            .map(|id| state.inodes[id].data.clone())
    }

    /// Replaces a file's content, as durable, for tests that damage files on purpose.
    pub fn set_file_content(&self, path: &Path, content: Vec<u8>) {
        let mut state = self.state.lock();
        let id = *state.names.get(path).expect("file exists");
        let inode = state.inode(id);
        inode.synced = content.clone();
        inode.data = content;
    }

    fn parent(path: &Path) -> PathBuf {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    fn not_found(path: &Path) -> io::Error {
        io::Error::new(io::ErrorKind::NotFound, format!("{path:?} not found"))
    }
}

/// xorshift64*: deterministic damage from a seed, with no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
}

impl StorageFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        state.check_power()?;
        let data = &state.inode(self.inode).data;
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let bytes = data.get(start..end).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        state.mutate(FaultOp::Write)?;
        let offset = offset as usize;
        let current = state.inode(self.inode).data.len();
        let growth = (offset + buf.len()).saturating_sub(current) as u64;
        let mut fits = buf.len();
        let mut full = false;
        if let Some(capacity) = state.capacity_bytes {
            let free = capacity.saturating_sub(state.used_bytes());
            if growth > free {
                fits =
                    (current.saturating_sub(offset) as u64 + free).min(buf.len() as u64) as usize;
                full = true;
            }
        }
        let data = &mut state.inode(self.inode).data;
        if data.len() < offset + fits {
            data.resize(offset + fits, 0);
        }
        data[offset..offset + fits].copy_from_slice(&buf[..fits]);
        if full {
            Err(io::ErrorKind::StorageFull.into())
        } else {
            Ok(())
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        state.mutate(FaultOp::Sync)?;
        let inode = state.inode(self.inode);
        inode.synced.clone_from(&inode.data);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let mut state = self.state.lock();
        state.check_power()?;
        Ok(state.inode(self.inode).data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        state.mutate(FaultOp::SetLen)?;
        state.inode(self.inode).data.resize(len as usize, 0);
        Ok(())
    }
}

#[derive(Debug)]
struct SimLock {
    state: Arc<Mutex<State>>,
    dir: PathBuf,
    token: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.state.lock();
        if state.locks.get(&self.dir) == Some(&self.token) {
            state.locks.remove(&self.dir);
        }
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.check_power()?;
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        state.check_power()?;
        if !state.dirs.contains(dir) {
            return Err(SimStorage::not_found(dir));
        }
        let files = state.names.keys().filter(|path| path.parent() == Some(dir));
        let dirs = state.dirs.iter().filter(|path| path.parent() == Some(dir));
        Ok(files
            .chain(dirs)
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut state = self.state.lock();
        state.check_power()?;
        let inode = match state.names.get(path) {
            Some(id) => *id,
            None if create => {
                if !state.dirs.contains(&SimStorage::parent(path)) {
                    return Err(SimStorage::not_found(path));
                }
                state.mutate(FaultOp::Create)?;
                let id = state.inode_next;
                state.inode_next += 1;
                state.inodes.insert(id, Inode::default());
                state.names.insert(path.to_path_buf(), id);
                id
            }
            None => return Err(SimStorage::not_found(path)),
        };
        Ok(Arc::new(SimFile {
            state: Arc::clone(&self.state),
            inode,
        }))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let state = self.state.lock();
        state.check_power()?;
        Ok(state.names.contains_key(path) || state.dirs.contains(path))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if !state.names.contains_key(path) {
            state.check_power()?;
            return Err(SimStorage::not_found(path));
        }
        state.mutate(FaultOp::Remove)?;
        state.names.remove(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let Some(&id) = state.names.get(from) else {
            state.check_power()?;
            return Err(SimStorage::not_found(from));
        };
        state.mutate(FaultOp::Rename)?;
        state.names.remove(from);
        state.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.mutate(FaultOp::SyncDir)?;
        let in_dir = |path: &PathBuf| path.parent() == Some(dir);
        let current: Vec<(PathBuf, u64)> = state
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        state.durable_names.retain(|path, _| !in_dir(path));
        state.durable_names.extend(current);
        Ok(())
    }

    fn read_sealed(&self, path: &Path) -> io::Result<Bytes> {
        let state = self.state.lock();
        state.check_power()?;
        let id = state
            .names
            .get(path)
            .ok_or_else(|| SimStorage::not_found(path))?;
        Ok(Bytes::copy_from_slice(&state.inodes[id].data))
    }

    fn map_growing(&self, path: &Path, _reserve: u64) -> io::Result<Bytes> {
        // No maps here: a copy of the file as it is now.
        self.read_sealed(path)
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync + fmt::Debug>> {
        let mut state = self.state.lock();
        state.check_power()?;
        if state.locks.contains_key(dir) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        state.lock_next += 1;
        let token = state.lock_next;
        state.locks.insert(dir.to_path_buf(), token);
        Ok(Box::new(SimLock {
            state: Arc::clone(&self.state),
            dir: dir.to_path_buf(),
            token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_cut_drops_unsynced_bytes_and_undurable_names() {
        let disk = SimStorage::new();
        let dir = Path::new("/d");
        disk.create_dir_all(dir).unwrap();
        let a = disk.open(&dir.join("a"), true).unwrap();
        a.write_all_at(b"hello", 0).unwrap();
        a.sync_data().unwrap();
        disk.sync_dir(dir).unwrap();
        a.write_all_at(b" world", 5).unwrap();
        let b = disk.open(&dir.join("b"), true).unwrap();
        b.write_all_at(b"lost", 0).unwrap();
        b.sync_data().unwrap(); // synced data, but the name never was
        disk.power_cut(Damage::DropUnsynced);
        assert_eq!(disk.file_content(&dir.join("a")).unwrap(), b"hello");
        assert!(disk.file_content(&dir.join("b")).is_none());
    }

    #[test]
    fn faults_fire_on_the_nth_operation() {
        let disk = SimStorage::new();
        disk.create_dir_all(Path::new("/d")).unwrap();
        let f = disk.open(Path::new("/d/f"), true).unwrap();
        disk.inject(Fault::eio(FaultOp::Sync, 1));
        f.sync_data().unwrap();
        assert!(f.sync_data().is_err());
        f.sync_data().unwrap();
    }

    #[test]
    fn capacity_gives_storage_full_after_a_partial_write() {
        let disk = SimStorage::new();
        disk.create_dir_all(Path::new("/d")).unwrap();
        let f = disk.open(Path::new("/d/f"), true).unwrap();
        disk.set_capacity(Some(4));
        let err = f.write_all_at(b"123456", 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(f.len().unwrap(), 4);
    }
}
