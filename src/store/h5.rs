//! The only code that calls HDF5: creating the container and validating it. HDF5 writes a file
//! once, when it is created; after that the engine moves raw bytes inside `/root` and `/data`
//! and HDF5 only reads the (unchanging) metadata to tell a reader where they are.
//!
//! The bundled libhdf5 is not thread-safe, so every call runs under the hdf5 crate's global
//! reentrant lock (`hdf5::sync::sync`), which also keeps HDF5 from printing error stacks. A
//! failing call's error stack is read while that lock is still held, before another thread's
//! call can replace it.

use std::ffi::{c_int, c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use hdf5::globals::{
    H5P_DATASET_ACCESS, H5P_DATASET_CREATE, H5P_FILE_ACCESS, H5T_C_S1, H5T_NATIVE_UINT32,
    H5T_NATIVE_UINT64, H5T_NATIVE_UINT8, H5T_STD_U32LE, H5T_STD_U8LE,
};
use hdf5_sys::h5::{haddr_t, herr_t, hsize_t, HADDR_UNDEF};
use hdf5_sys::h5a::{H5Aclose, H5Acreate2, H5Aexists, H5Aget_type, H5Aopen, H5Aread, H5Awrite};
use hdf5_sys::h5d::{
    H5D_alloc_time_t, H5D_fill_time_t, H5D_layout_t, H5Dclose, H5Dcreate2, H5Dget_create_plist,
    H5Dget_offset, H5Dget_space, H5Dget_type, H5Dopen2, H5Dwrite,
};
use hdf5_sys::h5f::{
    H5F_close_degree_t, H5F_libver_t, H5Fclose, H5Fcreate, H5Fget_vfd_handle, H5Fopen,
    H5F_ACC_EXCL, H5F_ACC_RDONLY, H5F_ACC_SWMR_READ,
};
use hdf5_sys::h5i::hid_t;
use hdf5_sys::h5p::{
    H5Pclose, H5Pcreate, H5Pget_layout, H5Pset_alignment, H5Pset_alloc_time, H5Pset_chunk_cache,
    H5Pset_fclose_degree, H5Pset_file_locking, H5Pset_fill_time, H5Pset_layout,
    H5Pset_libver_bounds, H5Pset_meta_block_size, H5Pset_metadata_read_attempts, H5P_DEFAULT,
};
use hdf5_sys::h5s::{
    H5S_class_t, H5Sclose, H5Screate, H5Screate_simple, H5Sget_simple_extent_dims,
    H5Sget_simple_extent_ndims,
};
use hdf5_sys::h5t::{
    H5T_class_t, H5T_str_t, H5Tclose, H5Tcopy, H5Tget_class, H5Tget_size, H5Tis_variable_str,
    H5Tset_size, H5Tset_strpad,
};

use crate::error::{Error, Result};
use crate::format::layout::{FORMAT_VERSION, MAX_CAPACITY, MIN_CAPACITY, PAGE, ROOT_SLOT, SEGMENT};

/// Value of the `hashdir_magic` root attribute.
const MAGIC: &[u8] = b"hashdir";
/// HDF5 sub-allocates metadata from blocks this large: all of it lands before `/data`.
const META_BLOCK: hsize_t = 1 << 20;
/// Objects at least this large (the root slots, `/data`) start on an OS page boundary, so a
/// page write never straddles two OS pages (torn writes split at OS page boundaries).
const ALIGN_THRESHOLD: hsize_t = 2 * ROOT_SLOT as hsize_t;
const ALIGNMENT: hsize_t = PAGE as hsize_t;
/// HDF5's SWMR metadata read attempts (see `fapl`).
const METADATA_READ_ATTEMPTS: std::ffi::c_uint = 24;
const ROOT_NAME: &CStr = c"root";
const DATA_NAME: &CStr = c"data";
const ATTR_MAGIC: &CStr = c"hashdir_magic";
const ATTR_FORMAT: &CStr = c"hashdir_format";
const ATTR_PAGE: &CStr = c"page_size";
const MAX_RANK: usize = 2;

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

/// File access: SWMR-capable format, HDF5's own locking off (we hold our own lock and readers
/// must not block the writer's open), and closing the file closes everything in it.
fn fapl() -> Result<Hid> {
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
    Ok(p)
}

/// Dataset access: no chunk cache; raw data never goes through HDF5.
fn dapl() -> Result<Hid> {
    let p = plist(*H5P_DATASET_ACCESS)?;
    // SAFETY: `p` is a live dataset access property list.
    call("H5Pset_chunk_cache", || unsafe {
        H5Pset_chunk_cache(p.id(), 0, 0, 1.0)
    })?;
    Ok(p)
}

/// Dataset creation: contiguous storage allocated at creation and never filled, so the dataset
/// has its file address at once and creating it writes nothing but metadata.
fn dcpl() -> Result<Hid> {
    let p = plist(*H5P_DATASET_CREATE)?;
    // SAFETY: `p` is a live dataset creation property list.
    call("H5Pset_layout", || unsafe {
        H5Pset_layout(p.id(), H5D_layout_t::H5D_CONTIGUOUS)
    })?;
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

/// Opens a file read-only with SWMR read (which works whatever else has the file open); only
/// to validate it and learn its layout: nobody writes through HDF5 after creation.
pub(super) fn open_file(path: &Path) -> Result<Hid> {
    let name = cstring(path)?;
    let fapl = fapl()?;
    // SAFETY: `name` is NUL-terminated and `fapl` live for the call.
    let file = Hid::new("H5Fopen", H5Fclose, || unsafe {
        H5Fopen(name.as_ptr(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl.id())
    })?;
    set_cloexec(&file)?;
    Ok(file)
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

/// Builds a complete hashdir file at `path` (which must not exist): the identity attributes,
/// `/root` (two slots, `root` written by `slot0` once the layout is known) and `/data` of
/// `capacity` bytes, both contiguous and allocated now. `/data` is never filled: the file is
/// that long but takes no disk until the engine writes into it. Nothing in HDF5's metadata
/// changes after this.
pub(super) fn create_file(
    path: &Path,
    capacity: u64,
    slot0: impl FnOnce(Layout) -> Vec<u8>,
) -> Result<Layout> {
    locked(|| {
        let name = cstring(path)?;
        let fapl = fapl()?;
        // SAFETY: `name` is NUL-terminated, `fapl` live; EXCL refuses an existing file.
        let file = Hid::new("H5Fcreate", H5Fclose, || unsafe {
            H5Fcreate(name.as_ptr(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.id())
        })?;
        set_cloexec(&file)?;
        write_identity(&file)?;
        let root = create_contiguous(&file, ROOT_NAME, &[2, ROOT_SLOT as u64])?;
        let data = create_contiguous(&file, DATA_NAME, &[capacity])?;
        let layout = layout(&file)?;
        let mut slots = slot0(layout);
        slots.resize(2 * ROOT_SLOT, 0);
        // SAFETY: `slots` holds exactly the dataset's 2*ROOT_SLOT u8 elements (H5S_ALL).
        call("H5Dwrite(root)", || unsafe {
            H5Dwrite(
                root.id(),
                *H5T_NATIVE_UINT8,
                0, // H5S_ALL
                0,
                H5P_DEFAULT,
                slots.as_ptr().cast(),
            )
        })?;
        root.close()?;
        data.close()?;
        file.close()?;
        Ok(layout)
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

/// A contiguous u8 dataset of shape `dims`, allocated at creation (so it sits at one fixed
/// file address, page-aligned by the file's alignment) and never filled.
fn create_contiguous(file: &Hid, name: &CStr, dims: &[u64]) -> Result<Hid> {
    let space = simple_space(dims, dims)?;
    let dcpl = dcpl()?;
    create_dataset(file, name, &space, &dcpl)
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
            "format version {version} is not supported (this build reads {FORMAT_VERSION}); \
             to move the data, run `hashdir dump` with the version that wrote the file and \
             `hashdir load` with this one (docs/USAGE.md)"
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

/// Shape, layout and element size of a dataset, to check it against the schema.
struct Geometry {
    dims: Vec<u64>,
    layout: H5D_layout_t,
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
    // SAFETY: `dtype` is a live datatype.
    let elem_size = locked(|| unsafe { H5Tget_size(dtype.id()) });
    Ok(Geometry {
        dims,
        layout,
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

fn layout_error(name: &str, detail: String) -> Error {
    Error::corrupt("dataset layout", 0, format!("/{name}: {detail}"))
}

/// The file offset of a contiguous u8 dataset whose shape passes `shape_ok`, and its bytes.
fn contiguous(file: &Hid, name: &CStr, shape_ok: impl Fn(&[u64]) -> bool) -> Result<(u64, u64)> {
    let shown = name.to_string_lossy();
    let dset = open_dataset(file, name).map_err(|e| layout_error(&shown, e.to_string()))?;
    let g = geometry(&dset, &shown)?;
    if g.layout != H5D_layout_t::H5D_CONTIGUOUS || !shape_ok(&g.dims) || g.elem_size != 1 {
        let detail = format!(
            "{:?} {:?} of {}-byte elements",
            g.layout, g.dims, g.elem_size
        );
        return Err(layout_error(&shown, detail));
    }
    // SAFETY: `dset` is a live dataset.
    let addr: haddr_t = locked(|| unsafe { H5Dget_offset(dset.id()) });
    if addr == HADDR_UNDEF || !addr.is_multiple_of(PAGE as u64) {
        return Err(layout_error(&shown, format!("storage at {addr:#x}")));
    }
    Ok((addr, g.dims.iter().product()))
}

/// Where hashdir's bytes are in a file that passed `check_identity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// File offset of `/root` slot 0 (slot 1 follows it).
    pub root: u64,
    /// File offset and bytes of `/data`.
    pub data: u64,
    pub capacity: u64,
}

/// The offsets of `/root` and `/data`, after checking both match the schema.
pub(super) fn layout(file: &Hid) -> Result<Layout> {
    let (root, _) = contiguous(file, ROOT_NAME, |d| d == [2, ROOT_SLOT as u64])?;
    let (data, capacity) = contiguous(file, DATA_NAME, |d| {
        d.len() == 1 && d[0] % SEGMENT == 0 && (MIN_CAPACITY..=MAX_CAPACITY).contains(&d[0])
    })?;
    Ok(Layout {
        root,
        data,
        capacity,
    })
}
