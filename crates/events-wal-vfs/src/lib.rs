//! A SQLite VFS that writes a transaction's WAL frames in a few large writes.
//!
//! SQLite appends every page of a commit to the write-ahead log with two `pwrite`s, one for
//! the 24-byte frame header and one for the page. The e2e benchmark's storage writer made
//! ~1.5 million of them per million events, and their per-call cost (system call, file
//! locking, a partial page-cache page per header) was an eighth of the writer thread, and a
//! small commit's few dozen calls sat on every notification's latency. This VFS wraps the
//! default one and, for WAL files only, gathers the appends of a transaction in memory and
//! writes them with one call per 124 KiB, always before the commit can become visible.
//!
//! **The rule that keeps it safe:** the bytes on disk plus the bytes held here always equal
//! what write-through would have produced, and a transaction's commit frame (the frame
//! whose header carries the database size) is written out, with everything before it,
//! inside the very `xWrite` calls that hand over its header and its page. SQLite publishes
//! a commit (the wal-index header other connections read) only after those calls return, so
//! no reader, checkpointer or crash recovery can see a committed frame that is not in the
//! file. Any write that is not a plain append (the WAL header after a restart, a frame
//! rewritten within a transaction, the checksum rewrite) first writes out what is held and
//! then goes straight through; a read, sync or size query of the WAL sees the held bytes
//! too. A failed write keeps the held bytes and returns the error, so SQLite fails the
//! transaction exactly as it would have; what a closed handle still holds belongs to a
//! transaction that never committed and is dropped.
//!
//! What this is not: a durability change (`synchronous` keeps its meaning: syncs write the
//! held bytes first), or a cache (reads go to the file). Database, journal and temporary
//! files are the default VFS's own objects, untouched.
//!
//! Use: [`register`] once, then open the writing connection with [`VFS_NAME`]
//! (`Connection::open_with_flags_and_vfs`). Other connections may use the default VFS: the
//! files underneath are the default VFS's, so locking and shared memory are shared as usual.

use std::cell::Cell;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// Name under which [`register`] makes the VFS known to SQLite.
pub const VFS_NAME: &CStr = c"events-wal-coalesce";

/// Size of a WAL frame header; the page follows it (sqlite.org/fileformat.html, "WAL File
/// Format"). Pages are at least 512 bytes, so a 24-byte write to a WAL is always a header.
const FRAME_HEADER_BYTES: usize = 24;

/// Most bytes held before they are written (one write per this much of a large commit).
/// The default unix VFS writes at most 128 KiB - 1 bytes per call (`seekAndWriteFd` masks
/// the length with `0x1ffff`; a larger write is reported as a full disk).
const CAPACITY: usize = 124 * 1024;

/// `last_end` when no write can be appended to.
const NO_APPEND: i64 = i64::MIN;

/// Registers the VFS with SQLite (once per process; later calls return the first outcome)
/// and returns its name for `Connection::open_with_flags_and_vfs`.
///
/// # Errors
///
/// SQLite has no default VFS to wrap, or refused the registration.
pub fn register() -> rusqlite::Result<&'static CStr> {
    static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();
    match REGISTERED.get_or_init(register_once) {
        Ok(()) => Ok(VFS_NAME),
        Err(code) => Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(*code),
            Some(format!(
                "registering the {} SQLite VFS failed",
                VFS_NAME.to_string_lossy()
            )),
        )),
    }
}

thread_local! {
    static WAL_WRITES: Cell<u64> = const { Cell::new(0) };
}

/// WAL writes this thread has passed to the default VFS through this one (diagnostics and
/// tests: a commit of many pages should cost a handful, not two per page).
pub fn wal_writes_on_this_thread() -> u64 {
    WAL_WRITES.with(Cell::get)
}

fn register_once() -> Result<(), c_int> {
    // SAFETY: a null name asks for the default VFS; sqlite3_vfs_find initialises SQLite
    // first if needed and returns null or a VFS that lives until it is unregistered (the
    // default never is).
    let inner = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
    if inner.is_null() {
        return Err(ffi::SQLITE_ERROR);
    }
    // SAFETY: non-null, see above; only read.
    let inner_ref = unsafe { &*inner };
    let sz_os_file = c_int::try_from(WAL_FILE_BYTES)
        .ok()
        .and_then(|own| own.checked_add(inner_ref.szOsFile))
        .ok_or(ffi::SQLITE_ERROR)?;
    let vfs = Box::new(ffi::sqlite3_vfs {
        iVersion: inner_ref.iVersion.min(3),
        szOsFile: sz_os_file,
        mxPathname: inner_ref.mxPathname,
        pNext: ptr::null_mut(),
        zName: VFS_NAME.as_ptr(),
        pAppData: inner.cast(),
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dl_open),
        xDlError: Some(x_dl_error),
        xDlSym: Some(x_dl_sym),
        xDlClose: Some(x_dl_close),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: Some(x_get_last_error),
        xCurrentTimeInt64: Some(x_current_time_int64),
        xSetSystemCall: Some(x_set_system_call),
        xGetSystemCall: Some(x_get_system_call),
        xNextSystemCall: Some(x_next_system_call),
    });
    // SQLite keeps the pointer for the life of the process.
    let vfs: &'static mut ffi::sqlite3_vfs = Box::leak(vfs);
    // SAFETY: `vfs` is fully initialised and never freed; 0 = not the default VFS.
    let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rc)
    }
}

/// Where a write goes once this VFS lets it through.
trait Sink {
    fn write_at(&mut self, data: &[u8], offset: i64) -> c_int;
}

/// The appends a WAL handle holds back, and what it needs to know to decide.
///
/// Invariant: the file's bytes overlaid with `bytes` at `start` are exactly the file that
/// writing every call through would have produced. Holding bytes is only ever a question of
/// when they reach the file, never of what the file says once they have.
#[derive(Debug)]
struct Pending {
    /// Held bytes, to be written at `start`.
    bytes: Vec<u8>,
    start: i64,
    /// End offset of the last accepted write ([`NO_APPEND`] after a failed or unknown
    /// one): only a write starting exactly here is an append that may be held.
    last_end: i64,
    /// The last frame header written carried a commit mark: the writes after it complete
    /// a commit frame and are written out at once.
    in_commit_frame: bool,
}

impl Pending {
    const fn new() -> Self {
        Self {
            bytes: Vec::new(),
            start: 0,
            last_end: NO_APPEND,
            in_commit_frame: false,
        }
    }

    fn end(&self) -> Option<i64> {
        (!self.bytes.is_empty()).then(|| self.start + self.bytes.len() as i64)
    }

    fn write(&mut self, data: &[u8], offset: i64, sink: &mut impl Sink) -> c_int {
        let end = offset + data.len() as i64;
        let header = data.len() == FRAME_HEADER_BYTES;
        let hold = offset == self.last_end && data.len() <= CAPACITY;
        if !hold || self.bytes.len() + data.len() > CAPACITY {
            let rc = self.flush(sink);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if header {
            self.in_commit_frame = commits(data);
        }
        if !hold {
            let rc = sink.write_at(data, offset);
            self.last_end = if rc == ffi::SQLITE_OK { end } else { NO_APPEND };
            return rc;
        }
        if self.bytes.is_empty() {
            self.start = offset;
            if self.bytes.capacity() == 0 {
                self.bytes.reserve_exact(CAPACITY);
            }
        }
        self.bytes.extend_from_slice(data);
        self.last_end = end;
        if self.in_commit_frame {
            // A commit frame's header or page: everything up to here goes out before SQLite
            // can publish the commit (never held past the call, whatever follows it).
            return self.flush(sink);
        }
        ffi::SQLITE_OK
    }

    /// Writes out what is held. On failure the bytes stay held (a later flush retries) and
    /// the error goes back to SQLite, which then fails the operation it was doing.
    fn flush(&mut self, sink: &mut impl Sink) -> c_int {
        if self.bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let rc = sink.write_at(&self.bytes, self.start);
        if rc == ffi::SQLITE_OK {
            self.bytes.clear();
        }
        rc
    }

    /// The file is cut to `size`: held bytes beyond it would have been cut away too.
    fn truncate(&mut self, size: i64) {
        if let Some(end) = self.end() {
            let keep = (size.clamp(self.start, end) - self.start) as usize;
            self.bytes.truncate(keep);
        }
        self.last_end = NO_APPEND;
    }

    /// The file's size as write-through would have left it.
    fn size(&self, file_size: i64) -> i64 {
        self.end().map_or(file_size, |end| end.max(file_size))
    }

    /// Drops what is held: on close, it belongs to a transaction that never committed.
    fn discard(&mut self) {
        self.bytes.clear();
        self.last_end = NO_APPEND;
    }
}

/// Whether a frame header marks a commit: bytes 4..8 hold the database size in pages after
/// the commit, zero for every other frame.
fn commits(header: &[u8]) -> bool {
    header.get(4..8).is_some_and(|size| size != [0, 0, 0, 0])
}

/// A WAL file opened through this VFS: our methods in front, the default VFS's file behind
/// (in the same allocation, right after this struct).
#[repr(C)]
struct WalFile {
    /// Must be first: SQLite sees a `*mut sqlite3_file`.
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    pending: Pending,
}

/// Bytes of a [`WalFile`] before the inner file starts (kept 16-aligned for the inner one).
const WAL_FILE_BYTES: usize = std::mem::size_of::<WalFile>().next_multiple_of(16);

/// The inner file as the flushing side of [`Pending`].
struct InnerFile(*mut ffi::sqlite3_file);

impl Sink for InnerFile {
    fn write_at(&mut self, data: &[u8], offset: i64) -> c_int {
        let Ok(amount) = c_int::try_from(data.len()) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        WAL_WRITES.with(|writes| writes.set(writes.get() + 1));
        // SAFETY: `self.0` is an open file of the default VFS (a WalFile's inner file, alive
        // until its xClose) and `data` is valid for `amount` bytes for the whole call.
        unsafe {
            match methods(self.0).xWrite {
                Some(write) => write(self.0, data.as_ptr().cast(), amount, offset),
                None => ffi::SQLITE_IOERR_WRITE,
            }
        }
    }
}

/// The default VFS behind ours.
///
/// # Safety
///
/// `vfs` must be the VFS registered by `register_once` (SQLite passes it back to every
/// VFS-level callback), whose `pAppData` is the default VFS.
unsafe fn inner_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: see the function's contract.
    unsafe { (*vfs).pAppData.cast() }
}

/// The io-methods of an inner file (set by its successful xOpen, valid until its xClose).
///
/// # Safety
///
/// `inner` must be an open file of the default VFS.
unsafe fn methods(inner: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: per this function's contract the pointer is set and the methods are a static
    // table of the default VFS.
    unsafe { &*(*inner).pMethods }
}

/// The [`WalFile`] behind a file SQLite hands to one of [`WAL_METHODS`].
///
/// # Safety
///
/// `file` must have been opened by [`x_open`] as a WAL file and not yet closed; SQLite uses
/// a file from one thread at a time, so the reference is unique for the call.
unsafe fn wal<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalFile {
    // SAFETY: see the function's contract.
    unsafe { &mut *file.cast::<WalFile>() }
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite calls xOpen with our registered VFS.
    let inner_vfs = unsafe { inner_vfs(vfs) };
    // SAFETY: the default VFS outlives every open file.
    let Some(open) = (unsafe { (*inner_vfs).xOpen }) else {
        return ffi::SQLITE_CANTOPEN;
    };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Every other file is the default VFS's own object, in place: `file` has room for
        // it (szOsFile is larger) and SQLite then calls the default methods directly.
        // SAFETY: arguments as SQLite passed them, with the default VFS as the VFS.
        return unsafe { open(inner_vfs, name, file, flags, out_flags) };
    }
    // SAFETY: `file` has szOsFile = WAL_FILE_BYTES + the default szOsFile bytes, so the
    // inner file fits after our header.
    let inner = unsafe { file.cast::<u8>().add(WAL_FILE_BYTES) }.cast::<ffi::sqlite3_file>();
    // SAFETY: as above; SQLite zeroes `file` before xOpen, so `inner.pMethods` starts null.
    let rc = unsafe { open(inner_vfs, name, inner, flags, out_flags) };
    if rc != ffi::SQLITE_OK {
        // SAFETY: a failed open that set its methods still wants its xClose (sqlite3.h);
        // ours stays null, so SQLite will not call anything of ours.
        unsafe {
            if !(*inner).pMethods.is_null()
                && let Some(close) = (*(*inner).pMethods).xClose
            {
                close(inner);
            }
            (*file).pMethods = ptr::null();
        }
        return rc;
    }
    // SAFETY: `file` is valid for WAL_FILE_BYTES, 8-aligned (SQLite's allocation), and not
    // yet initialised as a WalFile; xClose drops what is written here.
    unsafe {
        ptr::write(
            file.cast::<WalFile>(),
            WalFile {
                base: ffi::sqlite3_file {
                    pMethods: &WAL_METHODS,
                },
                inner,
                pending: Pending::new(),
            },
        );
    }
    ffi::SQLITE_OK
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    // Version 1: shared memory and memory mapping are the database file's, never the WAL's.
    iVersion: 1,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes each file it opened once.
    let wal = unsafe { wal(file) };
    wal.pending.discard();
    let inner = wal.inner;
    // SAFETY: the inner file is open until here; the WalFile is dropped in place exactly
    // once (SQLite frees the memory after this returns and calls nothing more on it).
    unsafe {
        let rc = match methods(inner).xClose {
            Some(close) => close(inner),
            None => ffi::SQLITE_OK,
        };
        ptr::drop_in_place(file.cast::<WalFile>());
        rc
    }
}

unsafe extern "C" fn wal_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: an open WAL file of ours.
    let wal = unsafe { wal(file) };
    let rc = wal.pending.flush(&mut InnerFile(wal.inner));
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    // SAFETY: forwarded as given to an open inner file.
    unsafe {
        match methods(wal.inner).xRead {
            Some(read) => read(wal.inner, buf, amount, offset),
            None => ffi::SQLITE_IOERR_READ,
        }
    }
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: an open WAL file of ours.
    let wal = unsafe { wal(file) };
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let data: &[u8] = if len == 0 {
        &[]
    } else {
        // SAFETY: SQLite passes `amount` readable bytes at `buf` for the call's duration.
        unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }
    };
    wal.pending.write(data, offset, &mut InnerFile(wal.inner))
}

unsafe extern "C" fn wal_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: an open WAL file of ours.
    let wal = unsafe { wal(file) };
    wal.pending.truncate(size);
    // SAFETY: forwarded to an open inner file.
    unsafe {
        match methods(wal.inner).xTruncate {
            Some(truncate) => truncate(wal.inner, size),
            None => ffi::SQLITE_IOERR_TRUNCATE,
        }
    }
}

unsafe extern "C" fn wal_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: an open WAL file of ours.
    let wal = unsafe { wal(file) };
    let rc = wal.pending.flush(&mut InnerFile(wal.inner));
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    // SAFETY: forwarded to an open inner file.
    unsafe {
        match methods(wal.inner).xSync {
            Some(sync) => sync(wal.inner, flags),
            None => ffi::SQLITE_IOERR_FSYNC,
        }
    }
}

unsafe extern "C" fn wal_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: an open WAL file of ours.
    let wal = unsafe { wal(file) };
    // SAFETY: forwarded to an open inner file; `size` is SQLite's out-pointer.
    unsafe {
        let rc = match methods(wal.inner).xFileSize {
            Some(file_size) => file_size(wal.inner, size),
            None => ffi::SQLITE_IOERR_FSTAT,
        };
        if rc == ffi::SQLITE_OK {
            *size = wal.pending.size(*size);
        }
        rc
    }
}

/// io-methods that need nothing of what is held: straight to the inner file.
macro_rules! forward_to_inner_file {
    ($(fn $name:ident => $field:ident($($arg:ident: $ty:ty),*) -> $ret:ty, else $fallback:expr;)*) => {$(
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> $ret {
            // SAFETY: an open WAL file of ours; its inner file is open and takes the call
            // as SQLite made it.
            unsafe {
                let inner = wal(file).inner;
                match methods(inner).$field {
                    Some(method) => method(inner, $($arg),*),
                    None => $fallback,
                }
            }
        }
    )*};
}

forward_to_inner_file! {
    fn wal_lock => xLock(level: c_int) -> c_int, else ffi::SQLITE_IOERR_LOCK;
    fn wal_unlock => xUnlock(level: c_int) -> c_int, else ffi::SQLITE_IOERR_UNLOCK;
    fn wal_check_reserved_lock => xCheckReservedLock(out: *mut c_int) -> c_int,
        else ffi::SQLITE_IOERR_CHECKRESERVEDLOCK;
    fn wal_file_control => xFileControl(op: c_int, arg: *mut c_void) -> c_int,
        else ffi::SQLITE_NOTFOUND;
    fn wal_sector_size => xSectorSize() -> c_int, else 4096;
    fn wal_device_characteristics => xDeviceCharacteristics() -> c_int, else 0;
}

/// VFS-level calls: to the default VFS unchanged, with it as the VFS argument. Our
/// `iVersion` is the default VFS's (at most 3), so SQLite only calls the fields it has.
macro_rules! forward_to_inner_vfs {
    ($(fn $name:ident => $field:ident($($arg:ident: $ty:ty),*) -> $ret:ty, else $fallback:expr;)*) => {$(
        unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs, $($arg: $ty),*) -> $ret {
            // SAFETY: SQLite calls VFS-level methods with our registered VFS; the default VFS
            // behind it outlives every call and takes it as SQLite made it.
            unsafe {
                let inner = inner_vfs(vfs);
                match (*inner).$field {
                    Some(method) => method(inner, $($arg),*),
                    None => $fallback,
                }
            }
        }
    )*};
}

type DlSymbol = Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>;

forward_to_inner_vfs! {
    fn x_delete => xDelete(name: *const c_char, sync_dir: c_int) -> c_int,
        else ffi::SQLITE_IOERR_DELETE;
    fn x_access => xAccess(name: *const c_char, flags: c_int, out: *mut c_int) -> c_int,
        else ffi::SQLITE_IOERR_ACCESS;
    fn x_full_pathname => xFullPathname(name: *const c_char, n_out: c_int, out: *mut c_char)
        -> c_int, else ffi::SQLITE_CANTOPEN;
    fn x_dl_open => xDlOpen(name: *const c_char) -> *mut c_void, else ptr::null_mut();
    fn x_dl_error => xDlError(n_byte: c_int, message: *mut c_char) -> (), else ();
    fn x_dl_sym => xDlSym(handle: *mut c_void, symbol: *const c_char) -> DlSymbol, else None;
    fn x_dl_close => xDlClose(handle: *mut c_void) -> (), else ();
    fn x_randomness => xRandomness(n_byte: c_int, out: *mut c_char) -> c_int, else 0;
    fn x_sleep => xSleep(microseconds: c_int) -> c_int, else 0;
    fn x_current_time => xCurrentTime(out: *mut f64) -> c_int, else ffi::SQLITE_ERROR;
    fn x_get_last_error => xGetLastError(n_byte: c_int, out: *mut c_char) -> c_int, else 0;
    fn x_current_time_int64 => xCurrentTimeInt64(out: *mut ffi::sqlite3_int64) -> c_int,
        else ffi::SQLITE_ERROR;
    fn x_set_system_call => xSetSystemCall(name: *const c_char, call: ffi::sqlite3_syscall_ptr)
        -> c_int, else ffi::SQLITE_NOTFOUND;
    fn x_get_system_call => xGetSystemCall(name: *const c_char) -> ffi::sqlite3_syscall_ptr,
        else None;
    fn x_next_system_call => xNextSystemCall(name: *const c_char) -> *const c_char,
        else ptr::null();
}

#[cfg(test)]
mod tests;
