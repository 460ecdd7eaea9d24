! hashdir.f90: Fortran 2008 bindings for libhashdir (include/hashdir.h).
!
! Two layers:
! - the C API itself, as bind(C) interfaces and interoperable derived types
!   (hashdir_key, hashdir_value: integer(c_int8_t) :: bytes(16); hashdir_options;
!   hashdir_stats) - every function returns an integer(c_int) status;
! - handle types hd_writer and hd_reader with type-bound procedures (hd_writer%open_shard
!   and hd_shard_of for sharded stores). Each takes optional
!   `stat` and `errmsg` arguments, like ALLOCATE: with `stat` present a failure is
!   returned there, and its message (from hashdir_last_error) in `errmsg`, a character
!   variable of any length (character(len=512) holds every message hashdir makes; longer
!   ones are cut); without `stat` a failure prints the message and stops the program
!   (ERROR STOP).
!
! Installed by scripts/install.sh as PREFIX/share/hashdir/fortran/hashdir.f90 (module files
! are compiler-specific, so the module ships as source). Build:
!   gfortran -std=f2008 $(pkg-config --variable=fortran_source hashdir) prog.f90 \
!       $(pkg-config --libs hashdir)
! or, with CMake (Fortran enabled): find_package(hashdir CONFIG REQUIRED), link hashdir::fortran.
!
! Threads: a reader may be used by many threads at once; a writer's calls are
! serialised by the library. Close every handle exactly once.
!
! SPDX-License-Identifier: MIT OR Apache-2.0
module hashdir
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: error_unit
  implicit none
  private

  ! Status codes (enum hashdir_status).
  integer(c_int), parameter, public :: HASHDIR_OK = 0
  integer(c_int), parameter, public :: HASHDIR_ERR_INVALID_ARGUMENT = 1
  integer(c_int), parameter, public :: HASHDIR_ERR_IO = 2
  integer(c_int), parameter, public :: HASHDIR_ERR_CORRUPT = 3
  integer(c_int), parameter, public :: HASHDIR_ERR_NOT_HASHDIR = 4
  integer(c_int), parameter, public :: HASHDIR_ERR_LOCKED = 5
  integer(c_int), parameter, public :: HASHDIR_ERR_NOT_FOUND = 6
  integer(c_int), parameter, public :: HASHDIR_ERR_BUFFER_TOO_SMALL = 7
  integer(c_int), parameter, public :: HASHDIR_ERR_PANIC = 8

  ! Writer flags.
  integer(c_int32_t), parameter, public :: HASHDIR_CREATE = 1
  integer(c_int32_t), parameter, public :: HASHDIR_SYNC_COMMIT = 2

  !> A key: 16 opaque bytes, compared bytewise.
  type, bind(C), public :: hashdir_key
    integer(c_int8_t) :: bytes(16)
  end type hashdir_key

  !> A value: 16 opaque bytes. A key maps to a set of values.
  type, bind(C), public :: hashdir_value
    integer(c_int8_t) :: bytes(16)
  end type hashdir_value

  !> Options for opening; fill with hashdir_options_init (hd_options() does).
  type, bind(C), public :: hashdir_options
    integer(c_int32_t) :: struct_size = 0
    integer(c_int32_t) :: flags = 0
    integer(c_int64_t) :: checkpoint_bytes = 0
    integer(c_int32_t) :: refresh_interval_ms = 0
    integer(c_int64_t) :: capacity = 0
    integer(c_int32_t) :: shards = 0
  end type hashdir_options

  !> Counters of an open file. struct_size must be set before the call (the handle
  !> types' stats procedures do it).
  type, bind(C), public :: hashdir_stats
    integer(c_int32_t) :: struct_size = 0
    integer(c_int32_t) :: global_depth = 0
    integer(c_int64_t) :: keys = 0
    integer(c_int64_t) :: values = 0
    integer(c_int64_t) :: buckets = 0
    integer(c_int64_t) :: file_bytes = 0
    integer(c_int64_t) :: epoch = 0
    integer(c_int64_t) :: wal_bytes = 0
    integer(c_int64_t) :: extents = 0
    integer(c_int64_t) :: disk_bytes = 0
    integer(c_int64_t) :: delta_tables = 0
    integer(c_int64_t) :: delta_bytes = 0
    integer(c_int32_t) :: merging = 0
  end type hashdir_stats

  !> What opening a writer recovered (hashdir_writer_recovery). struct_size must be set
  !> before the call.
  type, bind(C), public :: hashdir_recovery
    integer(c_int32_t) :: struct_size = 0
    integer(c_int32_t) :: dropped = 0
    integer(c_int64_t) :: root_epoch = 0
    integer(c_int64_t) :: batches_replayed = 0
    integer(c_int64_t) :: log_bytes_replayed = 0
    integer(c_int64_t) :: micros = 0
  end type hashdir_recovery

  ! ---------------------------------------------------------------------------------
  ! The C API, one interface per function of hashdir.h.
  public :: hashdir_version, hashdir_last_error, hashdir_status_name, hashdir_options_init
  public :: hashdir_writer_open, hashdir_writer_insert, hashdir_writer_insert_values
  public :: hashdir_writer_delete_keys
  public :: hashdir_writer_delete_pairs, hashdir_writer_commit, hashdir_writer_checkpoint
  public :: hashdir_writer_sync
  public :: hashdir_writer_stats, hashdir_writer_close
  public :: hashdir_reader_open, hashdir_reader_refresh, hashdir_reader_lookup
  public :: hashdir_reader_get, hashdir_reader_stats, hashdir_reader_close
  public :: hashdir_shard_writer_open, hashdir_shard_of
  public :: hashdir_verify, hashdir_writer_recovery, hashdir_writer_gc, hashdir_copy

  interface
    function hashdir_version() bind(C, name="hashdir_version")
      import :: c_ptr
      type(c_ptr) :: hashdir_version
    end function hashdir_version

    function hashdir_last_error() bind(C, name="hashdir_last_error")
      import :: c_ptr
      type(c_ptr) :: hashdir_last_error
    end function hashdir_last_error

    function hashdir_status_name(status) bind(C, name="hashdir_status_name")
      import :: c_ptr, c_int32_t
      integer(c_int32_t), value :: status
      type(c_ptr) :: hashdir_status_name
    end function hashdir_status_name

    subroutine hashdir_options_init(opts) bind(C, name="hashdir_options_init")
      import :: hashdir_options
      type(hashdir_options), intent(out) :: opts
    end subroutine hashdir_options_init

    function hashdir_writer_open(path, opts, out) bind(C, name="hashdir_writer_open")
      import :: c_char, c_ptr, c_int, hashdir_options
      character(kind=c_char), intent(in) :: path(*)
      type(hashdir_options), intent(in) :: opts
      type(c_ptr), intent(out) :: out
      integer(c_int) :: hashdir_writer_open
    end function hashdir_writer_open

    function hashdir_writer_insert(w, keys, values, n) bind(C, name="hashdir_writer_insert")
      import :: c_ptr, c_int, c_size_t, hashdir_key, hashdir_value
      type(c_ptr), value :: w
      type(hashdir_key), intent(in) :: keys(*)
      type(hashdir_value), intent(in) :: values(*)
      integer(c_size_t), value :: n
      integer(c_int) :: hashdir_writer_insert
    end function hashdir_writer_insert

    function hashdir_writer_insert_values(w, key, values, n) &
        bind(C, name="hashdir_writer_insert_values")
      import :: c_ptr, c_int, c_size_t, hashdir_key, hashdir_value
      type(c_ptr), value :: w
      type(hashdir_key), intent(in) :: key
      type(hashdir_value), intent(in) :: values(*)
      integer(c_size_t), value :: n
      integer(c_int) :: hashdir_writer_insert_values
    end function hashdir_writer_insert_values

    function hashdir_writer_delete_keys(w, keys, n) bind(C, name="hashdir_writer_delete_keys")
      import :: c_ptr, c_int, c_size_t, hashdir_key
      type(c_ptr), value :: w
      type(hashdir_key), intent(in) :: keys(*)
      integer(c_size_t), value :: n
      integer(c_int) :: hashdir_writer_delete_keys
    end function hashdir_writer_delete_keys

    function hashdir_writer_delete_pairs(w, keys, values, n) &
        bind(C, name="hashdir_writer_delete_pairs")
      import :: c_ptr, c_int, c_size_t, hashdir_key, hashdir_value
      type(c_ptr), value :: w
      type(hashdir_key), intent(in) :: keys(*)
      type(hashdir_value), intent(in) :: values(*)
      integer(c_size_t), value :: n
      integer(c_int) :: hashdir_writer_delete_pairs
    end function hashdir_writer_delete_pairs

    function hashdir_writer_commit(w) bind(C, name="hashdir_writer_commit")
      import :: c_ptr, c_int
      type(c_ptr), value :: w
      integer(c_int) :: hashdir_writer_commit
    end function hashdir_writer_commit

    function hashdir_writer_checkpoint(w) bind(C, name="hashdir_writer_checkpoint")
      import :: c_ptr, c_int
      type(c_ptr), value :: w
      integer(c_int) :: hashdir_writer_checkpoint
    end function hashdir_writer_checkpoint

    function hashdir_writer_sync(w) bind(C, name="hashdir_writer_sync")
      import :: c_ptr, c_int
      type(c_ptr), value :: w
      integer(c_int) :: hashdir_writer_sync
    end function hashdir_writer_sync

    function hashdir_writer_stats(w, out) bind(C, name="hashdir_writer_stats")
      import :: c_ptr, c_int, hashdir_stats
      type(c_ptr), value :: w
      type(hashdir_stats), intent(inout) :: out
      integer(c_int) :: hashdir_writer_stats
    end function hashdir_writer_stats

    function hashdir_writer_close(w) bind(C, name="hashdir_writer_close")
      import :: c_ptr, c_int
      type(c_ptr), value :: w
      integer(c_int) :: hashdir_writer_close
    end function hashdir_writer_close

    function hashdir_reader_open(path, opts, out) bind(C, name="hashdir_reader_open")
      import :: c_char, c_ptr, c_int, hashdir_options
      character(kind=c_char), intent(in) :: path(*)
      type(hashdir_options), intent(in) :: opts
      type(c_ptr), intent(out) :: out
      integer(c_int) :: hashdir_reader_open
    end function hashdir_reader_open

    function hashdir_reader_refresh(r) bind(C, name="hashdir_reader_refresh")
      import :: c_ptr, c_int
      type(c_ptr), value :: r
      integer(c_int) :: hashdir_reader_refresh
    end function hashdir_reader_refresh

    function hashdir_reader_lookup(r, keys, n, first_values, found) &
        bind(C, name="hashdir_reader_lookup")
      import :: c_ptr, c_int, c_size_t, c_int8_t, hashdir_key, hashdir_value
      type(c_ptr), value :: r
      type(hashdir_key), intent(in) :: keys(*)
      integer(c_size_t), value :: n
      type(hashdir_value), intent(out) :: first_values(*)
      integer(c_int8_t), intent(out) :: found(*)
      integer(c_int) :: hashdir_reader_lookup
    end function hashdir_reader_lookup

    function hashdir_reader_get(r, keys, n, values, capacity, counts, total) &
        bind(C, name="hashdir_reader_get")
      import :: c_ptr, c_int, c_size_t, c_int64_t, hashdir_key, hashdir_value
      type(c_ptr), value :: r
      type(hashdir_key), intent(in) :: keys(*)
      integer(c_size_t), value :: n
      type(hashdir_value), intent(inout) :: values(*)
      integer(c_size_t), value :: capacity
      integer(c_int64_t), intent(out) :: counts(*)
      integer(c_size_t), intent(out) :: total
      integer(c_int) :: hashdir_reader_get
    end function hashdir_reader_get

    function hashdir_reader_stats(r, out) bind(C, name="hashdir_reader_stats")
      import :: c_ptr, c_int, hashdir_stats
      type(c_ptr), value :: r
      type(hashdir_stats), intent(inout) :: out
      integer(c_int) :: hashdir_reader_stats
    end function hashdir_reader_stats

    function hashdir_reader_close(r) bind(C, name="hashdir_reader_close")
      import :: c_ptr, c_int
      type(c_ptr), value :: r
      integer(c_int) :: hashdir_reader_close
    end function hashdir_reader_close

    function hashdir_shard_writer_open(dir, shard, opts, out) &
        bind(C, name="hashdir_shard_writer_open")
      import :: c_char, c_ptr, c_int, c_int32_t, hashdir_options
      character(kind=c_char), intent(in) :: dir(*)
      integer(c_int32_t), value :: shard
      type(hashdir_options), intent(in) :: opts
      type(c_ptr), intent(out) :: out
      integer(c_int) :: hashdir_shard_writer_open
    end function hashdir_shard_writer_open

    ! C's uint32_t as c_int32_t: shard counts and numbers are at most 4096. Pure: it reads
    ! the key only (so hd_shard_of can be elemental).
    pure function hashdir_shard_of(key, shards) bind(C, name="hashdir_shard_of")
      import :: c_int32_t, hashdir_key
      type(hashdir_key), intent(in) :: key
      integer(c_int32_t), value :: shards
      integer(c_int32_t) :: hashdir_shard_of
    end function hashdir_shard_of

    function hashdir_verify(path, report, report_len, problems) bind(C, name="hashdir_verify")
      import :: c_char, c_int, c_size_t, c_int64_t
      character(kind=c_char), intent(in) :: path(*)
      character(kind=c_char), intent(inout) :: report(*)
      integer(c_size_t), value :: report_len
      integer(c_int64_t), intent(out) :: problems
      integer(c_int) :: hashdir_verify
    end function hashdir_verify

    function hashdir_writer_recovery(w, out, report, report_len) &
        bind(C, name="hashdir_writer_recovery")
      import :: c_ptr, c_char, c_int, c_size_t, hashdir_recovery
      type(c_ptr), value :: w
      type(hashdir_recovery), intent(inout) :: out
      character(kind=c_char), intent(inout) :: report(*)
      integer(c_size_t), value :: report_len
      integer(c_int) :: hashdir_writer_recovery
    end function hashdir_writer_recovery

    function hashdir_writer_gc(w, pages_reclaimed, segment_bytes_reclaimed) &
        bind(C, name="hashdir_writer_gc")
      import :: c_ptr, c_int, c_int64_t
      type(c_ptr), value :: w
      integer(c_int64_t), intent(out) :: pages_reclaimed, segment_bytes_reclaimed
      integer(c_int) :: hashdir_writer_gc
    end function hashdir_writer_gc

    function hashdir_copy(r, dest_path) bind(C, name="hashdir_copy")
      import :: c_ptr, c_char, c_int
      type(c_ptr), value :: r
      character(kind=c_char), intent(in) :: dest_path(*)
      integer(c_int) :: hashdir_copy
    end function hashdir_copy

    ! From the C library, to measure the strings hashdir returns.
    function c_strlen(s) bind(C, name="strlen")
      import :: c_ptr, c_size_t
      type(c_ptr), value :: s
      integer(c_size_t) :: c_strlen
    end function c_strlen
  end interface

  ! ---------------------------------------------------------------------------------
  ! The Fortran layer.
  public :: hd_options, hd_key, hd_value, hd_to_int, hd_version, hd_status_name
  public :: hd_shard_of, hd_verify
  public :: hd_error_message, hd_c_string
  public :: operator(==)

  !> The one writer of a file. close() commits, checkpoints and releases the file.
  type, public :: hd_writer
    type(c_ptr) :: handle = c_null_ptr
  contains
    procedure :: open => writer_open
    procedure :: open_shard => writer_open_shard
    procedure :: insert => writer_insert
    procedure :: insert_values => writer_insert_values
    procedure :: delete_keys => writer_delete_keys
    procedure :: delete_pairs => writer_delete_pairs
    procedure :: commit => writer_commit
    procedure :: checkpoint => writer_checkpoint
    procedure :: sync => writer_sync
    procedure :: stats => writer_stats
    procedure :: gc => writer_gc
    procedure :: close => writer_close
    procedure :: is_open => writer_is_open
  end type hd_writer

  !> A reader: sees the last commit as of its open or refresh.
  type, public :: hd_reader
    type(c_ptr) :: handle = c_null_ptr
  contains
    procedure :: open => reader_open
    procedure :: refresh => reader_refresh
    procedure :: lookup => reader_lookup
    procedure :: get => reader_get
    procedure :: stats => reader_stats
    procedure :: copy => reader_copy
    procedure :: close => reader_close
    procedure :: is_open => reader_is_open
  end type hd_reader

  interface operator(==)
    module procedure key_eq, value_eq
  end interface

  !> hd_key(n) / hd_value(n): a key or value holding the integer n little-endian in its
  !> first 8 bytes, zeros after (handy test data; real keys are usually hashes or UUIDs).
  interface hd_key
    module procedure key_of_int, key_of_int64
  end interface
  interface hd_value
    module procedure value_of_int, value_of_int64
  end interface

contains

  !> Default options (HASHDIR_CREATE on), optionally changed. shards > 1 makes a new
  !> store a directory of that many files (a sharded store; hashdir.h, hashdir_options).
  function hd_options(create, sync_commit, checkpoint_bytes, refresh_interval_ms, &
                      capacity, shards) result(o)
    logical, intent(in), optional :: create, sync_commit
    integer(c_int64_t), intent(in), optional :: checkpoint_bytes, capacity
    integer(c_int32_t), intent(in), optional :: refresh_interval_ms, shards
    type(hashdir_options) :: o
    call hashdir_options_init(o)
    if (present(create)) then
      if (.not. create) o%flags = iand(o%flags, not(HASHDIR_CREATE))
    end if
    if (present(sync_commit)) then
      if (sync_commit) o%flags = ior(o%flags, HASHDIR_SYNC_COMMIT)
    end if
    if (present(checkpoint_bytes)) o%checkpoint_bytes = checkpoint_bytes
    if (present(refresh_interval_ms)) o%refresh_interval_ms = refresh_interval_ms
    if (present(capacity)) o%capacity = capacity
    if (present(shards)) o%shards = shards
  end function hd_options

  !> Checks the file (or sharded store) at `path` against its format (hashdir_verify):
  !> `problems` gets how many problems were found, `report` (optional, any length; cut to
  !> 4095 characters) the report, one problem a line or one "ok: ..." line. Problems found are a failure
  !> (HASHDIR_ERR_CORRUPT): with `stat` present it is returned there.
  subroutine hd_verify(path, problems, report, stat, errmsg)
    character(len=*), intent(in) :: path
    integer(c_int64_t), intent(out) :: problems
    character(len=*), intent(out), optional :: report
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    character(kind=c_char, len=4096) :: buf
    integer :: nul
    call finish(hashdir_verify(path // c_null_char, buf, len(buf, kind=c_size_t), problems), &
                stat, errmsg)
    if (present(report)) then
      nul = index(buf, c_null_char)
      if (nul == 0) nul = len(buf) + 1
      report = buf(1:nul - 1)
    end if
  end subroutine hd_verify

  !> The shard (0 .. shards - 1) of key in a sharded store of `shards` shards: file
  !> shard_NNN.h5 of its directory. 0 and 1 both mean one shard, and give 0.
  elemental integer function hd_shard_of(key, shards)
    type(hashdir_key), intent(in) :: key
    integer, intent(in) :: shards
    hd_shard_of = int(hashdir_shard_of(key, int(shards, c_int32_t)))
  end function hd_shard_of

  elemental function key_of_int64(n) result(k)
    integer(c_int64_t), intent(in) :: n
    type(hashdir_key) :: k
    k%bytes(1:8) = le_bytes(n)
    k%bytes(9:16) = 0_c_int8_t
  end function key_of_int64

  elemental function key_of_int(n) result(k)
    integer, intent(in) :: n
    type(hashdir_key) :: k
    k = key_of_int64(int(n, c_int64_t))
  end function key_of_int

  elemental function value_of_int64(n) result(v)
    integer(c_int64_t), intent(in) :: n
    type(hashdir_value) :: v
    v%bytes(1:8) = le_bytes(n)
    v%bytes(9:16) = 0_c_int8_t
  end function value_of_int64

  elemental function value_of_int(n) result(v)
    integer, intent(in) :: n
    type(hashdir_value) :: v
    v = value_of_int64(int(n, c_int64_t))
  end function value_of_int

  !> The number in a value's first 8 bytes (the inverse of hd_value).
  elemental function hd_to_int(v) result(n)
    type(hashdir_value), intent(in) :: v
    integer(c_int64_t) :: n
    integer :: i
    n = 0
    do i = 8, 1, -1
      n = ior(ishft(n, 8), iand(int(v%bytes(i), c_int64_t), 255_c_int64_t))
    end do
  end function hd_to_int

  pure function le_bytes(n) result(b)
    integer(c_int64_t), intent(in) :: n
    integer(c_int8_t) :: b(8)
    integer :: i, byte
    do i = 1, 8
      byte = int(iand(ishft(n, -8 * (i - 1)), 255_c_int64_t))
      if (byte > 127) byte = byte - 256
      b(i) = int(byte, c_int8_t)
    end do
  end function le_bytes

  elemental logical function key_eq(a, b)
    type(hashdir_key), intent(in) :: a, b
    key_eq = all(a%bytes == b%bytes)
  end function key_eq

  elemental logical function value_eq(a, b)
    type(hashdir_value), intent(in) :: a, b
    value_eq = all(a%bytes == b%bytes)
  end function value_eq

  !> A C string as a Fortran string.
  function hd_c_string(p) result(s)
    type(c_ptr), intent(in) :: p
    character(len=:), allocatable :: s
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n
    if (.not. c_associated(p)) then
      s = ""
      return
    end if
    n = int(c_strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate (character(len=n) :: s)
    do i = 1, n
      s(i:i) = chars(i)
    end do
  end function hd_c_string

  function hd_version() result(s)
    character(len=:), allocatable :: s
    s = hd_c_string(hashdir_version())
  end function hd_version

  !> "HASHDIR_ERR_LOCKED", ...
  function hd_status_name(status) result(s)
    integer(c_int), intent(in) :: status
    character(len=:), allocatable :: s
    s = hd_c_string(hashdir_status_name(int(status, c_int32_t)))
  end function hd_status_name

  !> The message of this thread's last failed call (hashdir_last_error()).
  function hd_error_message() result(s)
    character(len=:), allocatable :: s
    s = hd_c_string(hashdir_last_error())
  end function hd_error_message

  !> Hands a status to the caller (stat/errmsg present) or stops on a failure. `message`
  !> replaces hashdir_last_error() for failures found before calling the library.
  subroutine finish(status, stat, errmsg, message)
    integer(c_int), intent(in) :: status
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    character(len=*), intent(in), optional :: message
    character(len=:), allocatable :: text
    if (status == HASHDIR_OK) then
      text = ""
    else if (present(message)) then
      text = message
    else
      text = hd_error_message()
    end if
    if (present(stat)) then
      stat = int(status)
      if (present(errmsg)) errmsg = text
    else if (status /= HASHDIR_OK) then
      write (error_unit, '(a, ": ", a)') hd_status_name(status), text
      error stop 1
    end if
  end subroutine finish

  !> The caller's options, or the defaults when none were passed.
  function options_or_default(options) result(o)
    type(hashdir_options), intent(in), optional :: options
    type(hashdir_options) :: o
    if (present(options)) then
      o = options
    else
      o = hd_options()
    end if
  end function options_or_default

  ! ---------------------------------------------------------------------------------
  ! hd_writer

  !> Opens (by default creates) `path` for writing; recovers after a crash.
  subroutine writer_open(self, path, options, stat, errmsg)
    class(hd_writer), intent(inout) :: self
    character(len=*), intent(in) :: path
    type(hashdir_options), intent(in), optional :: options
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    if (c_associated(self%handle)) then
      call finish(HASHDIR_ERR_INVALID_ARGUMENT, stat, errmsg, &
                  "hd_writer%open: this handle is already open; close it first")
      return
    end if
    call finish(hashdir_writer_open(path // c_null_char, options_or_default(options), &
                                    self%handle), stat, errmsg)
  end subroutine writer_open

  !> Opens shard `shard` (0-based) of the sharded store at `dir` alone, as the writer of
  !> that one file (hashdir_shard_writer_open): for programs in which each process (an MPI
  !> rank, say) writes its own shards and routes keys with hd_shard_of.
  subroutine writer_open_shard(self, dir, shard, options, stat, errmsg)
    class(hd_writer), intent(inout) :: self
    character(len=*), intent(in) :: dir
    integer, intent(in) :: shard
    type(hashdir_options), intent(in), optional :: options
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    if (c_associated(self%handle)) then
      call finish(HASHDIR_ERR_INVALID_ARGUMENT, stat, errmsg, &
                  "hd_writer%open_shard: this handle is already open; close it first")
      return
    end if
    if (shard < 0) then
      call finish(HASHDIR_ERR_INVALID_ARGUMENT, stat, errmsg, &
                  "hd_writer%open_shard: shard numbers start at 0")
      return
    end if
    call finish(hashdir_shard_writer_open(dir // c_null_char, int(shard, c_int32_t), &
                                          options_or_default(options), self%handle), &
                stat, errmsg)
  end subroutine writer_open_shard

  !> Adds the pairs (keys(i), values(i)); a pair already there changes nothing.
  subroutine writer_insert(self, keys, values, stat, errmsg)
    class(hd_writer), intent(inout) :: self
    type(hashdir_key), intent(in), contiguous :: keys(:)
    type(hashdir_value), intent(in), contiguous :: values(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    if (size(keys) /= size(values)) then
      call finish(HASHDIR_ERR_INVALID_ARGUMENT, stat, errmsg, &
                  "hd_writer%insert: keys and values differ in length")
      return
    end if
    call finish(hashdir_writer_insert(self%handle, keys, values, size(keys, kind=c_size_t)), &
                stat, errmsg)
  end subroutine writer_insert

  !> Adds the pairs (key, values(i)): insert for one key and many values, without
  !> repeating the key. A pair already there (or given twice) changes nothing.
  subroutine writer_insert_values(self, key, values, stat, errmsg)
    class(hd_writer), intent(inout) :: self
    type(hashdir_key), intent(in) :: key
    type(hashdir_value), intent(in), contiguous :: values(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    call finish(hashdir_writer_insert_values(self%handle, key, values, &
                                             size(values, kind=c_size_t)), stat, errmsg)
  end subroutine writer_insert_values

  !> Removes the keys with all their values; absent keys are ignored.
  subroutine writer_delete_keys(self, keys, stat, errmsg)
    class(hd_writer), intent(inout) :: self
    type(hashdir_key), intent(in), contiguous :: keys(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    call finish(hashdir_writer_delete_keys(self%handle, keys, size(keys, kind=c_size_t)), &
                stat, errmsg)
  end subroutine writer_delete_keys

  !> Removes the pairs (keys(i), values(i)); absent pairs are ignored.
  subroutine writer_delete_pairs(self, keys, values, stat, errmsg)
    class(hd_writer), intent(inout) :: self
    type(hashdir_key), intent(in), contiguous :: keys(:)
    type(hashdir_value), intent(in), contiguous :: values(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    if (size(keys) /= size(values)) then
      call finish(HASHDIR_ERR_INVALID_ARGUMENT, stat, errmsg, &
                  "hd_writer%delete_pairs: keys and values differ in length")
      return
    end if
    call finish(hashdir_writer_delete_pairs(self%handle, keys, values, &
                                            size(keys, kind=c_size_t)), stat, errmsg)
  end subroutine writer_delete_pairs

  !> Makes everything since the last commit one atomic, crash-safe batch.
  subroutine writer_commit(self, stat, errmsg)
    class(hd_writer), intent(inout) :: self
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    call finish(hashdir_writer_commit(self%handle), stat, errmsg)
  end subroutine writer_commit

  !> Merges everything committed into the base table (stats counts become current).
  subroutine writer_checkpoint(self, stat, errmsg)
    class(hd_writer), intent(inout) :: self
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    call finish(hashdir_writer_checkpoint(self%handle), stat, errmsg)
  end subroutine writer_checkpoint

  !> Makes every committed batch durable against a power cut now (one fdatasync).
  subroutine writer_sync(self, stat, errmsg)
    class(hd_writer), intent(inout) :: self
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    call finish(hashdir_writer_sync(self%handle), stat, errmsg)
  end subroutine writer_sync

  subroutine writer_stats(self, st, stat, errmsg)
    class(hd_writer), intent(inout) :: self
    type(hashdir_stats), intent(out) :: st
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    st%struct_size = int(c_sizeof(st), c_int32_t)
    call finish(hashdir_writer_stats(self%handle, st), stat, errmsg)
  end subroutine writer_stats

  !> The full garbage-collection pass (hashdir_writer_gc): checkpoints, reclaims every page
  !> and segment nothing references, gives free space back to the file system.
  subroutine writer_gc(self, pages_reclaimed, segment_bytes_reclaimed, stat, errmsg)
    class(hd_writer), intent(inout) :: self
    integer(c_int64_t), intent(out), optional :: pages_reclaimed, segment_bytes_reclaimed
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    integer(c_int64_t) :: pages, bytes
    call finish(hashdir_writer_gc(self%handle, pages, bytes), stat, errmsg)
    if (present(pages_reclaimed)) pages_reclaimed = pages
    if (present(segment_bytes_reclaimed)) segment_bytes_reclaimed = bytes
  end subroutine writer_gc

  !> Commits, checkpoints, releases the file lock. The handle is gone even on failure.
  subroutine writer_close(self, stat, errmsg)
    class(hd_writer), intent(inout) :: self
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    integer(c_int) :: status
    status = hashdir_writer_close(self%handle)
    self%handle = c_null_ptr
    call finish(status, stat, errmsg)
  end subroutine writer_close

  logical function writer_is_open(self)
    class(hd_writer), intent(in) :: self
    writer_is_open = c_associated(self%handle)
  end function writer_is_open

  ! ---------------------------------------------------------------------------------
  ! hd_reader

  !> Opens `path` for reading, seeing the last commit.
  subroutine reader_open(self, path, options, stat, errmsg)
    class(hd_reader), intent(inout) :: self
    character(len=*), intent(in) :: path
    type(hashdir_options), intent(in), optional :: options
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    if (c_associated(self%handle)) then
      call finish(HASHDIR_ERR_INVALID_ARGUMENT, stat, errmsg, &
                  "hd_reader%open: this handle is already open; close it first")
      return
    end if
    call finish(hashdir_reader_open(path // c_null_char, options_or_default(options), &
                                    self%handle), stat, errmsg)
  end subroutine reader_open

  !> Moves the view to the writer's last commit.
  subroutine reader_refresh(self, stat, errmsg)
    class(hd_reader), intent(inout) :: self
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    call finish(hashdir_reader_refresh(self%handle), stat, errmsg)
  end subroutine reader_refresh

  !> found(i): whether keys(i) has a value; first_values(i): one of them if so.
  subroutine reader_lookup(self, keys, found, first_values, stat, errmsg)
    class(hd_reader), intent(inout) :: self
    type(hashdir_key), intent(in), contiguous :: keys(:)
    logical, intent(out) :: found(:)
    type(hashdir_value), intent(out), optional :: first_values(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    type(hashdir_value) :: first(size(keys))
    integer(c_int8_t) :: flags(size(keys))
    integer(c_int) :: status
    status = hashdir_reader_lookup(self%handle, keys, size(keys, kind=c_size_t), first, flags)
    if (status == HASHDIR_OK) then
      found = flags /= 0
      if (present(first_values)) first_values = first
    end if
    call finish(status, stat, errmsg)
  end subroutine reader_lookup

  !> All values of each key: counts(i) values of keys(i), stored one key after the other
  !> in values(1:total). `values` is the buffer to use (keep it to reuse its memory): when
  !> it is too small (or not allocated) the library answers HASHDIR_ERR_BUFFER_TOO_SMALL
  !> with the total it needs, and the call is repeated with a buffer of that size.
  subroutine reader_get(self, keys, counts, values, total, stat, errmsg)
    class(hd_reader), intent(inout) :: self
    type(hashdir_key), intent(in), contiguous :: keys(:)
    integer(c_int64_t), intent(out) :: counts(:)
    type(hashdir_value), allocatable, intent(inout) :: values(:)
    integer(c_size_t), intent(out) :: total
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    integer(c_int) :: status
    integer(c_int64_t) :: c(size(keys))
    if (.not. allocated(values)) allocate (values(0))
    do
      status = hashdir_reader_get(self%handle, keys, size(keys, kind=c_size_t), values, &
                                  size(values, kind=c_size_t), c, total)
      if (status /= HASHDIR_ERR_BUFFER_TOO_SMALL) exit
      ! The view may move between calls with refresh_interval_ms: loop until it fits.
      deallocate (values)
      allocate (values(total))
    end do
    if (status == HASHDIR_OK) counts = c
    call finish(status, stat, errmsg)
  end subroutine reader_get

  subroutine reader_stats(self, st, stat, errmsg)
    class(hd_reader), intent(inout) :: self
    type(hashdir_stats), intent(out) :: st
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    st%struct_size = int(c_sizeof(st), c_int32_t)
    call finish(hashdir_reader_stats(self%handle, st), stat, errmsg)
  end subroutine reader_stats

  subroutine reader_close(self, stat, errmsg)
    class(hd_reader), intent(inout) :: self
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    integer(c_int) :: status
    status = hashdir_reader_close(self%handle)
    self%handle = c_null_ptr
    call finish(status, stat, errmsg)
  end subroutine reader_close

  !> Writes the state the reader sees to a new, compacted file `dest` (hashdir_copy) while
  !> the writer goes on; `dest` must not exist.
  subroutine reader_copy(self, dest, stat, errmsg)
    class(hd_reader), intent(inout) :: self
    character(len=*), intent(in) :: dest
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    call finish(hashdir_copy(self%handle, dest // c_null_char), stat, errmsg)
  end subroutine reader_copy

  logical function reader_is_open(self)
    class(hd_reader), intent(in) :: self
    reader_is_open = c_associated(self%handle)
  end function reader_is_open

end module hashdir
