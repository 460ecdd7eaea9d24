//! The only code that calls HDF5: the container's schema, opening modes, and chunk addresses.
//!
//! The bundled libhdf5 is not thread-safe, so every call runs under the hdf5 crate's global
//! reentrant lock (`hdf5::sync::sync`), which also keeps HDF5 from printing error stacks. A
//! failing call's error stack is read while that lock is still held, before another thread's
//! call can replace it.

use std::ffi::{c_int, c_uint, c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use hdf5::globals::{
    H5P_DATASET_ACCESS, H5P_DATASET_CREATE, H5P_FILE_ACCESS, H5T_C_S1, H5T_NATIVE_UINT32,
    H5T_NATIVE_UINT64, H5T_NATIVE_UINT8, H5T_STD_U32LE, H5T_STD_U8LE,
};
use hdf5_sys::h5::{haddr_t, hbool_t, herr_t, hsize_t, HADDR_UNDEF};
use hdf5_sys::h5a::{H5Aclose, H5Acreate2, H5Aexists, H5Aget_type, H5Aopen, H5Aread, H5Awrite};
use hdf5_sys::h5d::{
    H5D_alloc_time_t, H5D_fill_time_t, H5D_layout_t, H5Dchunk_iter, H5Dclose, H5Dcreate2,
    H5Dget_create_plist, H5Dget_offset, H5Dget_space, H5Dget_type, H5Dopen2, H5Dset_extent,
    H5Dwrite,
};
use hdf5_sys::h5f::{
    H5F_close_degree_t, H5F_libver_t, H5F_scope_t, H5Fclose, H5Fcreate, H5Fflush,
    H5Fget_vfd_handle, H5Fopen, H5F_ACC_EXCL, H5F_ACC_RDONLY, H5F_ACC_RDWR, H5F_ACC_SWMR_READ,
    H5F_ACC_SWMR_WRITE,
};
use hdf5_sys::h5g::{H5Gclose, H5Gcreate2};
use hdf5_sys::h5i::hid_t;
use hdf5_sys::h5p::{
    H5Pclose, H5Pcreate, H5Pget_chunk, H5Pget_layout, H5Pget_nfilters, H5Pset, H5Pset_alignment,
    H5Pset_alloc_time, H5Pset_chunk, H5Pset_chunk_cache, H5Pset_fclose_degree, H5Pset_file_locking,
    H5Pset_fill_time, H5Pset_layout, H5Pset_libver_bounds, H5Pset_meta_block_size,
    H5Pset_metadata_read_attempts, H5P_DEFAULT,
};
use hdf5_sys::h5s::{
    H5S_class_t, H5Sclose, H5Screate, H5Screate_simple, H5Sget_simple_extent_dims,
    H5Sget_simple_extent_ndims, H5S_UNLIMITED,
};
use hdf5_sys::h5t::{
    H5T_class_t, H5T_str_t, H5Tclose, H5Tcopy, H5Tget_class, H5Tget_size, H5Tis_variable_str,
    H5Tset_size, H5Tset_strpad,
};

use super::Ds;
use crate::error::{Error, Result};
use crate::format::layout::{FORMAT_VERSION, PAGE, ROOT_SLOT};

/// Value of the `hashdir_magic` root attribute.
const MAGIC: &[u8] = b"hashdir";
/// HDF5 sub-allocates metadata from blocks this large, so metadata rarely lands between the
/// raw chunks of one growth step.
const META_BLOCK: hsize_t = 1 << 20;
/// Objects at least this large (the root slots, every chunk) start on an OS page boundary, so a
/// page write never straddles two OS pages (torn writes split at OS page boundaries).
const ALIGN_THRESHOLD: hsize_t = 2 * ROOT_SLOT as hsize_t;
const ALIGNMENT: hsize_t = PAGE as hsize_t;
/// HDF5's SWMR metadata read attempts (see `fapl`).
const METADATA_READ_ATTEMPTS: std::ffi::c_uint = 24;
const ROOT_NAME: &CStr = c"root";
const VALUES_GROUP: &CStr = c"values";
const ATTR_MAGIC: &CStr = c"hashdir_magic";
const ATTR_FORMAT: &CStr = c"hashdir_format";
const ATTR_PAGE: &CStr = c"page_size";
const MAX_RANK: usize = 2;
/// A chunked dataset with one unlimited dimension holds at most 2^32 chunks (DESIGN.md §3).
pub(super) const MAX_CHUNKS: u64 = 1 << 32;

type Closer = unsafe extern "C" fn(hid_t) -> herr_t;

/// Runs `f` under the hdf5 crate's global lock; reentrant, so callers may nest it to make a
/// sequence of calls atomic with respect to other threads' HDF5 use.
pub(super) fn locked<T>(f: impl FnOnce() -> T) -> T {
    hdf5::sync::sync(f)
}

/// Return codes whose negative values mean failure (herr_t, htri_t, hid_t, c_int).
trait Status: Copy {
    fn failed(self) -> bool;
}
impl Status for i32 {
    fn failed(self) -> bool {
        self < 0
    }
}
impl Status for i64 {
    fn failed(self) -> bool {
        self < 0
    }
}

/// Runs one raw call under the lock, turning a failure into `Error::Hdf5` with HDF5's stack.
fn call<T: Status>(op: &'static str, f: impl FnOnce() -> T) -> Result<T> {
    locked(|| {
        let r = f();
        if r.failed() {
            Err(hdf5_error(op))
        } else {
            Ok(r)
        }
    })
}

fn hdf5_error(op: &'static str) -> Error {
    let detail = match hdf5::Error::query() {
        Ok(e) => describe(&e),
        Err(e) => e.to_string(),
    };
    Error::Hdf5 { op, detail }
}

/// The outermost frame (what failed) and the innermost one (why), as h5dump would show them.
fn describe(e: &hdf5::Error) -> String {
    let Some(stack) = e.stack().filter(|s| !s.is_empty()) else {
        return "no HDF5 error stack".to_owned();
    };
    let (outer, inner) = (&stack[0], &stack[stack.len() - 1]);
    if stack.len() == 1 {
        outer.description().to_owned()
    } else {
        format!("{} ... {}", outer.description(), inner.description())
    }
}

/// An HDF5 identifier that is closed exactly once, under the lock.
pub(super) struct Hid {
    id: hid_t,
    close: Closer,
}

impl Hid {
    fn new(op: &'static str, close: Closer, open: impl FnOnce() -> hid_t) -> Result<Hid> {
        let id = call(op, open)?;
        Ok(Hid { id, close })
    }

    fn id(&self) -> hid_t {
        self.id
    }

    /// Closes now and reports failure (a file's close flushes, so it can fail).
    pub(super) fn close(mut self) -> Result<()> {
        let id = std::mem::replace(&mut self.id, -1);
        // SAFETY: `id` is a live identifier of the kind `self.close` closes; it is closed once
        // because `self.id` is now -1 and Drop skips it.
        call("close", || unsafe { (self.close)(id) }).map(drop)
    }
}

impl Drop for Hid {
    fn drop(&mut self) {
        if self.id >= 0 {
            // SAFETY: as in `close`; a failure here has nobody to report to.
            locked(|| unsafe { (self.close)(self.id) });
        }
    }
}

fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidArgument(format!("path {} contains NUL", path.display())))
}

fn ds_name(ds: Ds) -> CString {
    CString::new(ds.name()).expect("dataset names have no NUL")
}

fn plist(class: hid_t) -> Result<Hid> {
    // SAFETY: `class` is one of HDF5's property list class ids.
    Hid::new("H5Pcreate", H5Pclose, || unsafe { H5Pcreate(class) })
}

fn scalar_space() -> Result<Hid> {
    // SAFETY: creating a dataspace has no preconditions.
    Hid::new("H5Screate", H5Sclose, || unsafe {
        H5Screate(H5S_class_t::H5S_SCALAR)
    })
}

fn simple_space(dims: &[u64], max: &[u64]) -> Result<Hid> {
    debug_assert_eq!(dims.len(), max.len());
    // SAFETY: both arrays hold `dims.len()` elements and outlive the call.
    Hid::new("H5Screate_simple", H5Sclose, || unsafe {
        H5Screate_simple(dims.len() as c_int, dims.as_ptr(), max.as_ptr())
    })
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// RDONLY|SWMR_READ: works while a writer has the file, and after a writer crashed.
    Inspect,
    /// RDWR|SWMR_WRITE: the single writer.
    Write,
    /// RDWR|SWMR_WRITE with `clear_status_flags` (what h5clear does), to recover after a
    /// writer crash. SWMR write so that a crash during recovery leaves the flags of a SWMR
    /// writer, which SWMR-read opens (our validation, readers) still accept.
    ClearFlags,
}

impl Mode {
    fn flags(self) -> c_uint {
        match self {
            Mode::Inspect => H5F_ACC_RDONLY | H5F_ACC_SWMR_READ,
            Mode::Write | Mode::ClearFlags => H5F_ACC_RDWR | H5F_ACC_SWMR_WRITE,
        }
    }
}

/// File access: SWMR-capable format, HDF5's own locking off (we hold our own lock and readers
/// must not block the writer's open), and closing the file closes everything in it.
fn fapl(clear_status_flags: bool) -> Result<Hid> {
    let p = plist(*H5P_FILE_ACCESS)?;
    let v110 = H5F_libver_t::H5F_LIBVER_V110;
    // SAFETY: `p` is a live file access property list.
    call("H5Pset_libver_bounds", || unsafe {
        H5Pset_libver_bounds(p.id(), v110, v110)
    })?;
    // SAFETY: as above.
    call("H5Pset_file_locking", || unsafe {
        H5Pset_file_locking(p.id(), 0, 1)
    })?;
    // SAFETY: as above.
    call("H5Pset_fclose_degree", || unsafe {
        H5Pset_fclose_degree(p.id(), H5F_close_degree_t::H5F_CLOSE_STRONG)
    })?;
    // SAFETY: as above.
    call("H5Pset_meta_block_size", || unsafe {
        H5Pset_meta_block_size(p.id(), META_BLOCK)
    })?;
    // SAFETY: as above.
    call("H5Pset_alignment", || unsafe {
        H5Pset_alignment(p.id(), ALIGN_THRESHOLD, ALIGNMENT)
    })?;
    // SWMR reads retry a metadata checksum failure with a sleep that doubles from 1 ns, 100
    // times by default: on a damaged file that is a hang of centuries. 24 tries wait at most
    // ~17 ms in all, ample for a writer's flush in flight.
    // SAFETY: as above.
    call("H5Pset_metadata_read_attempts", || unsafe {
        H5Pset_metadata_read_attempts(p.id(), METADATA_READ_ATTEMPTS)
    })?;
    if clear_status_flags {
        let mut yes: hbool_t = 1;
        // SAFETY: "clear_status_flags" is a registered hbool_t property of every file access
        // list (HDF5 >= 1.10); H5Pset copies the value from the pointer.
        call("H5Pset(clear_status_flags)", || unsafe {
            H5Pset(
                p.id(),
                c"clear_status_flags".as_ptr(),
                (&raw mut yes).cast(),
            )
        })?;
    }
    Ok(p)
}

/// Dataset access: no chunk cache, since raw data never goes through HDF5 (a cache would only
/// hold stale copies and make flushes rewrite whole chunks).
fn dapl() -> Result<Hid> {
    let p = plist(*H5P_DATASET_ACCESS)?;
    // SAFETY: `p` is a live dataset access property list.
    call("H5Pset_chunk_cache", || unsafe {
        H5Pset_chunk_cache(p.id(), 0, 0, 1.0)
    })?;
    Ok(p)
}

/// Dataset creation: storage allocated when the extent is set and never filled, so growth
/// yields addresses at once and writes nothing but metadata.
fn dcpl(layout: H5D_layout_t) -> Result<Hid> {
    let p = plist(*H5P_DATASET_CREATE)?;
    // SAFETY: `p` is a live dataset creation property list.
    call("H5Pset_layout", || unsafe { H5Pset_layout(p.id(), layout) })?;
    // SAFETY: as above.
    call("H5Pset_alloc_time", || unsafe {
        H5Pset_alloc_time(p.id(), H5D_alloc_time_t::H5D_ALLOC_TIME_EARLY)
    })?;
    // SAFETY: as above.
    call("H5Pset_fill_time", || unsafe {
        H5Pset_fill_time(p.id(), H5D_fill_time_t::H5D_FILL_TIME_NEVER)
    })?;
    Ok(p)
}

pub(super) fn open_file(path: &Path, mode: Mode) -> Result<Hid> {
    let name = cstring(path)?;
    let fapl = fapl(mode == Mode::ClearFlags)?;
    // SAFETY: `name` is NUL-terminated and `fapl` live for the call.
    let file = Hid::new("H5Fopen", H5Fclose, || unsafe {
        H5Fopen(name.as_ptr(), mode.flags(), fapl.id())
    })?;
    set_cloexec(&file)?;
    Ok(file)
}

/// Makes HDF5's dirty metadata reach the OS (not the disk: that is the caller's fsync).
pub(super) fn flush(file: &Hid) -> Result<()> {
    // SAFETY: `file` is a live file identifier.
    call("H5Fflush", || unsafe {
        H5Fflush(file.id(), H5F_scope_t::H5F_SCOPE_LOCAL)
    })
    .map(drop)
}

/// The descriptor HDF5's sec2 driver opened; valid while `file` is open.
fn vfd_fd(file: &Hid) -> Result<c_int> {
    let mut handle: *mut c_void = std::ptr::null_mut();
    // SAFETY: `file` is live and `handle` a valid out-pointer.
    call("H5Fget_vfd_handle", || unsafe {
        H5Fget_vfd_handle(file.id(), H5P_DEFAULT, &mut handle)
    })?;
    // SAFETY: for the default sec2 driver the handle points to the driver's `int` descriptor.
    Ok(unsafe { *handle.cast::<c_int>() })
}

fn os_error(op: &'static str) -> Error {
    Error::Hdf5 {
        op,
        detail: std::io::Error::last_os_error().to_string(),
    }
}

/// (st_dev, st_ino) of HDF5's descriptor, to prove it is the file we locked.
pub(super) fn vfd_inode(file: &Hid) -> Result<(u64, u64)> {
    let fd = vfd_fd(file)?;
    // SAFETY: all-zero is a valid `stat`; `fd` stays open while `file` is.
    let (rc, st) = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st), st)
    };
    if rc != 0 {
        return Err(os_error("fstat of the HDF5 descriptor"));
    }
    Ok((st.st_dev, st.st_ino))
}

/// HDF5 opens without O_CLOEXEC: without this, every program the application starts would
/// inherit the descriptor (and, with HDF5 file locking on, its lock) for its whole life.
fn set_cloexec(file: &Hid) -> Result<()> {
    let fd = vfd_fd(file)?;
    // SAFETY: F_GETFD/F_SETFD only read/modify the descriptor flags of HDF5's open `fd`.
    let rc = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            flags
        } else {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC)
        }
    };
    if rc < 0 {
        return Err(os_error("fcntl(FD_CLOEXEC) of the HDF5 descriptor"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Creation

/// Builds a complete hashdir file at `path` (which must not exist), with `root` in slot 0.
pub(super) fn create_file(path: &Path, root: &[u8]) -> Result<()> {
    locked(|| {
        let name = cstring(path)?;
        let fapl = fapl(false)?;
        // SAFETY: `name` is NUL-terminated, `fapl` live; EXCL refuses an existing file.
        let file = Hid::new("H5Fcreate", H5Fclose, || unsafe {
            H5Fcreate(name.as_ptr(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.id())
        })?;
        set_cloexec(&file)?;
        write_identity(&file)?;
        create_root(&file, root)?;
        create_group(&file, VALUES_GROUP)?;
        for ds in Ds::all() {
            create_chunked(&file, ds)?;
        }
        file.close()
    })
}

fn write_identity(file: &Hid) -> Result<()> {
    let magic = fixed_string_type(MAGIC.len())?;
    write_attr(
        file,
        ATTR_MAGIC,
        magic.id(),
        magic.id(),
        MAGIC.as_ptr().cast(),
    )?;
    let u32s = [FORMAT_VERSION, PAGE as u32];
    for (name, v) in [ATTR_FORMAT, ATTR_PAGE].into_iter().zip(&u32s) {
        let (ftype, mtype) = (*H5T_STD_U32LE, *H5T_NATIVE_UINT32);
        write_attr(file, name, ftype, mtype, std::ptr::from_ref(v).cast())?;
    }
    Ok(())
}

/// A fixed-length, NUL-padded string type: h5py shows it as bytes, h5dump as a string.
fn fixed_string_type(len: usize) -> Result<Hid> {
    // SAFETY: H5T_C_S1 is a predefined type; copying it yields a modifiable one.
    let t = Hid::new("H5Tcopy", H5Tclose, || unsafe { H5Tcopy(*H5T_C_S1) })?;
    // SAFETY: `t` is a live, modifiable string type.
    call("H5Tset_size", || unsafe { H5Tset_size(t.id(), len) })?;
    // SAFETY: as above.
    call("H5Tset_strpad", || unsafe {
        H5Tset_strpad(t.id(), H5T_str_t::H5T_STR_NULLPAD)
    })?;
    Ok(t)
}

/// Writes a scalar attribute; `buf` points to one value of `mtype`.
fn write_attr(
    loc: &Hid,
    name: &CStr,
    ftype: hid_t,
    mtype: hid_t,
    buf: *const c_void,
) -> Result<()> {
    let space = scalar_space()?;
    // SAFETY: all ids are live and `name` is NUL-terminated.
    let attr = Hid::new("H5Acreate2", H5Aclose, || unsafe {
        H5Acreate2(
            loc.id(),
            name.as_ptr(),
            ftype,
            space.id(),
            H5P_DEFAULT,
            H5P_DEFAULT,
        )
    })?;
    // SAFETY: the caller guarantees `buf` holds one element of `mtype`.
    call("H5Awrite", || unsafe { H5Awrite(attr.id(), mtype, buf) })?;
    attr.close()
}

fn create_group(file: &Hid, name: &CStr) -> Result<()> {
    // SAFETY: `file` is live and `name` NUL-terminated.
    Hid::new("H5Gcreate2", H5Gclose, || unsafe {
        H5Gcreate2(
            file.id(),
            name.as_ptr(),
            H5P_DEFAULT,
            H5P_DEFAULT,
            H5P_DEFAULT,
        )
    })?
    .close()
}

fn create_dataset(file: &Hid, name: &CStr, space: &Hid, dcpl: &Hid) -> Result<Hid> {
    let dapl = dapl()?;
    // SAFETY: all ids are live and `name` is NUL-terminated.
    Hid::new("H5Dcreate2", H5Dclose, || unsafe {
        H5Dcreate2(
            file.id(),
            name.as_ptr(),
            *H5T_STD_U8LE,
            space.id(),
            H5P_DEFAULT,
            dcpl.id(),
            dapl.id(),
        )
    })
}

/// `/root`: contiguous, so both slots sit at one fixed file address we can pwrite.
fn create_root(file: &Hid, root: &[u8]) -> Result<()> {
    let dims = [2, ROOT_SLOT as u64];
    let space = simple_space(&dims, &dims)?;
    let dcpl = dcpl(H5D_layout_t::H5D_CONTIGUOUS)?;
    let dset = create_dataset(file, ROOT_NAME, &space, &dcpl)?;
    let mut slots = vec![0u8; 2 * ROOT_SLOT];
    slots[..root.len()].copy_from_slice(root);
    // SAFETY: `slots` holds exactly the dataset's 2*ROOT_SLOT u8 elements (H5S_ALL).
    call("H5Dwrite(root)", || unsafe {
        H5Dwrite(
            dset.id(),
            *H5T_NATIVE_UINT8,
            0, // H5S_ALL
            0,
            H5P_DEFAULT,
            slots.as_ptr().cast(),
        )
    })?;
    dset.close()
}

fn create_chunked(file: &Hid, ds: Ds) -> Result<()> {
    let chunk = ds.chunk_dims();
    let mut max = chunk.to_vec();
    max[0] = H5S_UNLIMITED;
    let space = simple_space(&extent(ds, 0), &max)?;
    let dcpl = dcpl(H5D_layout_t::H5D_CHUNKED)?;
    // SAFETY: `chunk` holds `chunk.len()` dimensions; `dcpl` is live.
    call("H5Pset_chunk", || unsafe {
        H5Pset_chunk(dcpl.id(), chunk.len() as c_int, chunk.as_ptr())
    })?;
    create_dataset(file, &ds_name(ds), &space, &dcpl)?.close()
}

/// Dataset shape holding `n_chunks` whole chunks.
fn extent(ds: Ds, n_chunks: u64) -> Vec<u64> {
    let mut dims = ds.chunk_dims().to_vec();
    dims[0] *= n_chunks;
    dims
}

// ---------------------------------------------------------------------------------------------
// Validation (read-only)

/// Checks the root attributes; `Err(reason)` when the file is not a hashdir file we can read.
pub(super) fn check_identity(file: &Hid) -> std::result::Result<(), String> {
    let magic = read_string_attr(file, ATTR_MAGIC)?;
    if magic != MAGIC {
        return Err(format!(
            "attribute hashdir_magic is {:?}",
            String::from_utf8_lossy(&magic)
        ));
    }
    let version = read_uint_attr(file, ATTR_FORMAT)?;
    if version != u64::from(FORMAT_VERSION) {
        return Err(format!(
            "format version {version} is not supported (this build reads {FORMAT_VERSION})"
        ));
    }
    let page = read_uint_attr(file, ATTR_PAGE)?;
    if page != PAGE as u64 {
        return Err(format!("page size {page}, this build uses {PAGE}"));
    }
    Ok(())
}

/// An attribute of the root group with its type and type class.
struct Attr {
    attr: Hid,
    dtype: Hid,
    class: H5T_class_t,
}

fn open_attr(file: &Hid, name: &CStr) -> std::result::Result<Attr, String> {
    let attr_name = name.to_string_lossy();
    let why = |e: Error| format!("attribute {attr_name}: {e}");
    // SAFETY: `file` is live and `name` NUL-terminated.
    let exists = call("H5Aexists", || unsafe {
        H5Aexists(file.id(), name.as_ptr())
    });
    if exists.map_err(why)? == 0 {
        return Err(format!("attribute {attr_name} is missing"));
    }
    // SAFETY: as above; the attribute exists.
    let attr = Hid::new("H5Aopen", H5Aclose, || unsafe {
        H5Aopen(file.id(), name.as_ptr(), H5P_DEFAULT)
    })
    .map_err(why)?;
    // SAFETY: `attr` is a live attribute.
    let dtype = Hid::new("H5Aget_type", H5Tclose, || unsafe {
        H5Aget_type(attr.id())
    })
    .map_err(why)?;
    // SAFETY: `dtype` is a live datatype.
    let class = locked(|| unsafe { H5Tget_class(dtype.id()) });
    Ok(Attr { attr, dtype, class })
}

/// A fixed-length string attribute's bytes without trailing NULs.
fn read_string_attr(file: &Hid, name: &CStr) -> std::result::Result<Vec<u8>, String> {
    const MAX: usize = 64;
    let a = open_attr(file, name)?;
    // SAFETY: `a.dtype` is a live datatype.
    let (size, variable) =
        locked(|| unsafe { (H5Tget_size(a.dtype.id()), H5Tis_variable_str(a.dtype.id())) });
    if a.class != H5T_class_t::H5T_STRING || variable != 0 || size == 0 || size > MAX {
        return Err(format!(
            "attribute {} is not a short fixed-length string",
            name.to_string_lossy()
        ));
    }
    let mut buf = vec![0u8; size];
    // SAFETY: reading with the attribute's own fixed-length string type writes exactly
    // `size` bytes into `buf`.
    call("H5Aread", || unsafe {
        H5Aread(a.attr.id(), a.dtype.id(), buf.as_mut_ptr().cast())
    })
    .map_err(|e| e.to_string())?;
    while buf.last() == Some(&0) {
        buf.pop();
    }
    Ok(buf)
}

fn read_uint_attr(file: &Hid, name: &CStr) -> std::result::Result<u64, String> {
    let a = open_attr(file, name)?;
    if a.class != H5T_class_t::H5T_INTEGER {
        return Err(format!(
            "attribute {} is not an integer",
            name.to_string_lossy()
        ));
    }
    let mut v = 0u64;
    // SAFETY: HDF5 converts the integer to one native u64 written into `v`.
    call("H5Aread", || unsafe {
        H5Aread(a.attr.id(), *H5T_NATIVE_UINT64, (&raw mut v).cast())
    })
    .map_err(|e| e.to_string())?;
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Datasets of an open file

fn open_dataset(file: &Hid, name: &CStr) -> Result<Hid> {
    let dapl = dapl()?;
    // SAFETY: `file` and `dapl` are live; `name` is NUL-terminated.
    Hid::new("H5Dopen2", H5Dclose, || unsafe {
        H5Dopen2(file.id(), name.as_ptr(), dapl.id())
    })
}

/// Shape, chunk shape, layout and filters of a dataset, to check it against the schema.
struct Geometry {
    dims: Vec<u64>,
    chunk: Vec<u64>,
    layout: H5D_layout_t,
    filters: c_int,
    elem_size: usize,
}

fn geometry(dset: &Hid, name: &str) -> Result<Geometry> {
    // SAFETY: `dset` is a live dataset; the returned id is wrapped.
    let space = Hid::new("H5Dget_space", H5Sclose, || unsafe {
        H5Dget_space(dset.id())
    })?;
    // SAFETY: as above.
    let dcpl = Hid::new("H5Dget_create_plist", H5Pclose, || unsafe {
        H5Dget_create_plist(dset.id())
    })?;
    // SAFETY: as above.
    let dtype = Hid::new("H5Dget_type", H5Tclose, || unsafe {
        H5Dget_type(dset.id())
    })?;
    let dims = space_dims(&space, name)?;
    // SAFETY: `dcpl` is a live dataset creation property list.
    let layout = locked(|| unsafe { H5Pget_layout(dcpl.id()) });
    let chunk = if layout == H5D_layout_t::H5D_CHUNKED {
        chunk_dims(&dcpl)?
    } else {
        Vec::new()
    };
    // SAFETY: `dcpl` is a live dataset creation property list.
    let filters = call("H5Pget_nfilters", || unsafe { H5Pget_nfilters(dcpl.id()) })?;
    // SAFETY: `dtype` is a live datatype.
    let elem_size = locked(|| unsafe { H5Tget_size(dtype.id()) });
    Ok(Geometry {
        dims,
        chunk,
        layout,
        filters,
        elem_size,
    })
}

fn space_dims(space: &Hid, name: &str) -> Result<Vec<u64>> {
    // SAFETY: `space` is a live dataspace.
    let rank = call("H5Sget_simple_extent_ndims", || unsafe {
        H5Sget_simple_extent_ndims(space.id())
    })? as usize;
    if rank > MAX_RANK {
        return Err(layout_error(name, format!("rank {rank}")));
    }
    let mut dims = vec![0u64; rank];
    // SAFETY: `dims` has room for the dataspace's `rank` entries; null skips the max dims.
    call("H5Sget_simple_extent_dims", || unsafe {
        H5Sget_simple_extent_dims(space.id(), dims.as_mut_ptr(), std::ptr::null_mut())
    })?;
    Ok(dims)
}

fn chunk_dims(dcpl: &Hid) -> Result<Vec<u64>> {
    let mut chunk = [0u64; MAX_RANK];
    // SAFETY: `chunk` has room for the MAX_RANK entries we allow HDF5 to write.
    let rank = call("H5Pget_chunk", || unsafe {
        H5Pget_chunk(dcpl.id(), MAX_RANK as c_int, chunk.as_mut_ptr())
    })? as usize;
    Ok(chunk[..rank.min(MAX_RANK)].to_vec())
}

fn layout_error(name: &str, detail: String) -> Error {
    Error::corrupt("dataset layout", 0, format!("/{name}: {detail}"))
}

/// File offset of `/root` slot 0, after checking the dataset matches the schema.
pub(super) fn root_offset(file: &Hid) -> Result<u64> {
    let dset = open_dataset(file, ROOT_NAME).map_err(|e| layout_error("root", e.to_string()))?;
    let g = geometry(&dset, "root")?;
    let want = [2, ROOT_SLOT as u64];
    if g.layout != H5D_layout_t::H5D_CONTIGUOUS || g.dims != want || g.elem_size != 1 {
        let detail = format!(
            "{:?} {:?} of {}-byte elements",
            g.layout, g.dims, g.elem_size
        );
        return Err(layout_error("root", detail));
    }
    // SAFETY: `dset` is a live dataset.
    let addr: haddr_t = locked(|| unsafe { H5Dget_offset(dset.id()) });
    if addr == HADDR_UNDEF {
        return Err(layout_error("root", "no storage allocated".to_owned()));
    }
    Ok(addr)
}

/// Opens a chunked dataset, checks it against the schema, and returns it with its chunk count.
pub(super) fn open_chunked(file: &Hid, ds: Ds) -> Result<(Hid, u64)> {
    let name = ds.name();
    let dset = open_dataset(file, &ds_name(ds)).map_err(|e| layout_error(&name, e.to_string()))?;
    let g = geometry(&dset, &name)?;
    let chunk = ds.chunk_dims();
    let shape_ok = g.dims.len() == chunk.len() && g.dims[1..] == chunk[1..];
    let whole_chunks = shape_ok && g.dims[0] % chunk[0] == 0;
    if g.layout != H5D_layout_t::H5D_CHUNKED
        || g.chunk != chunk
        || g.filters != 0
        || g.elem_size != 1
        || !whole_chunks
    {
        let detail = format!(
            "{:?} shape {:?} chunk {:?}, {} filters, {}-byte elements",
            g.layout, g.dims, g.chunk, g.filters, g.elem_size
        );
        return Err(layout_error(&name, detail));
    }
    let n_chunks = g.dims[0] / chunk[0];
    if n_chunks > MAX_CHUNKS {
        return Err(layout_error(&name, format!("{n_chunks} chunks")));
    }
    Ok((dset, n_chunks))
}

/// Sets the extent of `ds` to `n_chunks` whole chunks (early allocation allocates them now).
pub(super) fn set_extent(dset: &Hid, ds: Ds, n_chunks: u64) -> Result<()> {
    let dims = extent(ds, n_chunks);
    // SAFETY: `dims` holds the dataset's rank of entries.
    call("H5Dset_extent", || unsafe {
        H5Dset_extent(dset.id(), dims.as_ptr())
    })
    .map(drop)
}

/// What the chunk iteration callback collects; filled without panicking (it runs inside C).
struct ChunkScan {
    chunk0: u64,
    chunk_bytes: u64,
    found: Vec<(u64, u64)>,
    /// First chunk that is not a plain, whole, unfiltered chunk: (coordinate, mask, size).
    bad: Option<(u64, c_uint, u64)>,
}

unsafe extern "C" fn scan_chunk(
    offset: *const hsize_t,
    filter_mask: c_uint,
    addr: haddr_t,
    size: hsize_t,
    op_data: *mut c_void,
) -> c_int {
    // SAFETY: `op_data` is the `ChunkScan` that `scan_chunks` passed, exclusively borrowed for
    // the iteration; `offset` points to the chunk's coordinates (rank >= 1).
    let (scan, first) = unsafe { (&mut *op_data.cast::<ChunkScan>(), *offset) };
    if filter_mask != 0 || size != scan.chunk_bytes || first % scan.chunk0 != 0 {
        scan.bad = Some((first, filter_mask, size));
        return 1; // H5_ITER_STOP
    }
    scan.found.push((first / scan.chunk0, addr));
    0 // H5_ITER_CONT
}

fn index_error(ds: Ds, detail: String) -> Error {
    Error::corrupt("chunk index", 0, format!("/{}: {detail}", ds.name()))
}

/// Every chunk in the index of `ds` as (chunk index, address), sorted by index. The index may
/// hold chunks beyond the extent (see `repair_after_crash`).
fn scan_chunks(dset: &Hid, ds: Ds) -> Result<Vec<(u64, u64)>> {
    let chunk = ds.chunk_dims();
    let mut scan = ChunkScan {
        chunk0: chunk[0],
        chunk_bytes: chunk.iter().product(),
        found: Vec::new(),
        bad: None,
    };
    // SAFETY: `scan` outlives the call and is only touched by `scan_chunk` during it.
    call("H5Dchunk_iter", || unsafe {
        H5Dchunk_iter(
            dset.id(),
            H5P_DEFAULT,
            Some(scan_chunk),
            (&raw mut scan).cast(),
        )
    })?;
    if let Some((coord, mask, size)) = scan.bad {
        let detail = format!("chunk at {coord}: filter mask {mask:#x}, {size} bytes");
        return Err(index_error(ds, detail));
    }
    scan.found.sort_unstable();
    Ok(scan.found)
}

/// How many chunks, from index 0 on, are present without a hole.
fn dense_prefix(found: &[(u64, u64)]) -> u64 {
    found
        .iter()
        .enumerate()
        .take_while(|&(i, &(idx, _))| idx == i as u64)
        .count() as u64
}

/// File address of chunks `0..n_chunks` of `ds`, which must all exist. Chunks beyond the
/// extent (left by a growth a crash interrupted) are ignored: growing over them replaces them.
pub(super) fn chunk_addrs(dset: &Hid, ds: Ds, n_chunks: u64) -> Result<Vec<u64>> {
    let found = scan_chunks(dset, ds)?;
    let dense = dense_prefix(&found);
    if dense < n_chunks {
        let detail = format!("chunk {dense} of {n_chunks} is missing from the index");
        return Err(index_error(ds, detail));
    }
    let n = n_chunks as usize;
    Ok(found[..n].iter().map(|&(_, addr)| addr).collect())
}

// ---------------------------------------------------------------------------------------------
// Recovery

// Not declared by hdf5-sys; both exist since HDF5 1.10.0.
unsafe extern "C" {
    fn H5Fget_eoa(file_id: hid_t, eoa: *mut haddr_t) -> herr_t;
    fn H5Fincrement_filesize(file_id: hid_t, increment: hsize_t) -> herr_t;
}

/// End of everything the file's metadata records as allocated: the end-of-allocation (EOA)
/// and every chunk in every chunk index (including chunks beyond an extent).
///
/// Works on a file opened with `Mode::Inspect`, which (unlike read-write opens) does not
/// refuse a file shorter than its recorded EOA.
pub(super) fn allocated_end(file: &Hid) -> Result<u64> {
    let mut eoa: haddr_t = 0;
    // SAFETY: `file` is live and `eoa` a valid out-pointer.
    call("H5Fget_eoa", || unsafe { H5Fget_eoa(file.id(), &mut eoa) })?;
    let mut end = eoa;
    for ds in Ds::all() {
        let (dset, _) = open_chunked(file, ds)?;
        let bytes: u64 = ds.chunk_dims().iter().product();
        let found = scan_chunks(&dset, ds)?;
        let last = found.iter().map(|&(_, addr)| addr + bytes).max();
        end = end.max(last.unwrap_or(0));
    }
    Ok(end)
}

/// Repairs what a writer killed in the middle of a growth step can leave behind, on a file
/// opened with `Mode::ClearFlags` after the caller extended it to `allocated_end`.
///
/// HDF5 writes its metadata in no particular order, so a kill inside `grow` (before its flush
/// completed) can persist any subset of: the new extent, the new chunk index entries, the new
/// EOA in the superblock, the file extension. Seen in tests: index entries beyond the extent,
/// chunks inside the extent past the recorded EOA (HDF5 would hand that space out again), and
/// a recorded EOA past the end of the file (HDF5 then refuses read-write opens). The engine
/// never used those chunks (grow had not returned), so:
/// - the EOA is raised to the file's length, past every recorded chunk and every byte HDF5
///   wrote, so nothing recorded is ever allocated twice (the unfinished step's space may leak);
/// - an extent reaching past a hole in the chunk index is cut back to the hole.
pub(super) fn repair_after_crash(file: &Hid) -> Result<()> {
    // SAFETY: `file` is a live file opened read-write; HDF5 sets EOA = max(EOA, EOF) + 0.
    call("H5Fincrement_filesize", || unsafe {
        H5Fincrement_filesize(file.id(), 0)
    })?;
    for ds in Ds::all() {
        let (dset, n) = open_chunked(file, ds)?;
        let dense = dense_prefix(&scan_chunks(&dset, ds)?);
        if dense < n {
            set_extent(&dset, ds, dense)?;
        }
        dset.close()?;
    }
    Ok(())
}
