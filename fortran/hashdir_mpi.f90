! hashdir_mpi.f90: Fortran 2008 bindings for libhashdir_mpi (include/hashdir_mpi.h), on top
! of the module `hashdir` (fortran/hashdir.f90: key, value, options and stats types, status
! codes).
!
! - The C API as bind(C) interfaces; the communicator is an MPI_Fint: an `integer` of
!   `use mpi` / mpif.h (e.g. MPI_COMM_WORLD), or `comm%MPI_VAL` with `use mpi_f08`. The
!   module itself does not use MPI, so it builds with any Fortran MPI binding.
! - A handle type hd_mpi whose procedures take optional `stat` and `errmsg` as the `hashdir`
!   module's do (without `stat` a failure prints the message and stops the program).
!   open, commit, lookup, get, stats and close are collective: every rank calls them.
!
! Installed by scripts/install.sh (where mpicc is found) as
! PREFIX/share/hashdir/fortran/hashdir_mpi.f90. Build:
!   mpifort $(pkg-config --variable=fortran_source hashdir) \
!       $(pkg-config --variable=fortran_source hashdir_mpi) prog.f90 \
!       $(pkg-config --libs hashdir_mpi)
!
! SPDX-License-Identifier: MIT OR Apache-2.0
module hashdir_mpi
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: error_unit
  use hashdir, only: hashdir_key, hashdir_value, hashdir_options, hashdir_stats, HASHDIR_OK, &
                     HASHDIR_ERR_INVALID_ARGUMENT, HASHDIR_ERR_BUFFER_TOO_SMALL, hd_options, &
                     hd_status_name, hd_c_string
  implicit none
  private

  public :: hashdir_mpi_open_f, hashdir_mpi_insert, hashdir_mpi_commit, hashdir_mpi_lookup
  public :: hashdir_mpi_get, hashdir_mpi_stats, hashdir_mpi_times, hashdir_mpi_close
  public :: hashdir_mpi_last_error, hd_mpi_error_message

  interface
    function hashdir_mpi_last_error() bind(C, name="hashdir_mpi_last_error")
      import :: c_ptr
      type(c_ptr) :: hashdir_mpi_last_error
    end function hashdir_mpi_last_error

    function hashdir_mpi_open_f(dir, comm, shards_per_rank, opts, out) &
        bind(C, name="hashdir_mpi_open_f")
      import :: c_char, c_int, c_int32_t, c_ptr, hashdir_options
      character(kind=c_char), intent(in) :: dir(*)
      integer(c_int), value :: comm ! MPI_Fint
      integer(c_int32_t), value :: shards_per_rank
      type(hashdir_options), intent(in) :: opts
      type(c_ptr), intent(out) :: out
      integer(c_int) :: hashdir_mpi_open_f
    end function hashdir_mpi_open_f

    function hashdir_mpi_insert(h, keys, values, n) bind(C, name="hashdir_mpi_insert")
      import :: c_ptr, c_int, c_size_t, hashdir_key, hashdir_value
      type(c_ptr), value :: h
      type(hashdir_key), intent(in) :: keys(*)
      type(hashdir_value), intent(in) :: values(*)
      integer(c_size_t), value :: n
      integer(c_int) :: hashdir_mpi_insert
    end function hashdir_mpi_insert

    function hashdir_mpi_commit(h) bind(C, name="hashdir_mpi_commit")
      import :: c_ptr, c_int
      type(c_ptr), value :: h
      integer(c_int) :: hashdir_mpi_commit
    end function hashdir_mpi_commit

    function hashdir_mpi_lookup(h, keys, n, first_values, found) &
        bind(C, name="hashdir_mpi_lookup")
      import :: c_ptr, c_int, c_size_t, c_int8_t, hashdir_key, hashdir_value
      type(c_ptr), value :: h
      type(hashdir_key), intent(in) :: keys(*)
      integer(c_size_t), value :: n
      type(hashdir_value), intent(out) :: first_values(*)
      integer(c_int8_t), intent(out) :: found(*)
      integer(c_int) :: hashdir_mpi_lookup
    end function hashdir_mpi_lookup

    function hashdir_mpi_get(h, keys, n, values, capacity, counts, total) &
        bind(C, name="hashdir_mpi_get")
      import :: c_ptr, c_int, c_size_t, c_int64_t, hashdir_key, hashdir_value
      type(c_ptr), value :: h
      type(hashdir_key), intent(in) :: keys(*)
      integer(c_size_t), value :: n
      type(hashdir_value), intent(inout) :: values(*)
      integer(c_size_t), value :: capacity
      integer(c_int64_t), intent(out) :: counts(*)
      integer(c_size_t), intent(out) :: total
      integer(c_int) :: hashdir_mpi_get
    end function hashdir_mpi_get

    function hashdir_mpi_stats(h, out) bind(C, name="hashdir_mpi_stats")
      import :: c_ptr, c_int, hashdir_stats
      type(c_ptr), value :: h
      type(hashdir_stats), intent(inout) :: out
      integer(c_int) :: hashdir_mpi_stats
    end function hashdir_mpi_stats

    function hashdir_mpi_times(h, exchange_seconds, store_seconds) &
        bind(C, name="hashdir_mpi_times")
      import :: c_ptr, c_int, c_double
      type(c_ptr), value :: h
      real(c_double), intent(out) :: exchange_seconds, store_seconds
      integer(c_int) :: hashdir_mpi_times
    end function hashdir_mpi_times

    function hashdir_mpi_close(h) bind(C, name="hashdir_mpi_close")
      import :: c_ptr, c_int
      type(c_ptr), value :: h
      integer(c_int) :: hashdir_mpi_close
    end function hashdir_mpi_close
  end interface

  !> A store opened by the ranks of a communicator.
  type, public :: hd_mpi
    type(c_ptr) :: handle = c_null_ptr
  contains
    procedure :: open => mpi_open
    procedure :: insert => mpi_insert
    procedure :: commit => mpi_commit
    procedure :: lookup => mpi_lookup
    procedure :: get => mpi_get
    procedure :: stats => mpi_stats
    procedure :: times => mpi_times
    procedure :: close => mpi_close
    procedure :: is_open => mpi_is_open
  end type hd_mpi

contains

  function hd_mpi_error_message() result(s)
    character(len=:), allocatable :: s
    s = hd_c_string(hashdir_mpi_last_error())
  end function hd_mpi_error_message

  ! As the `hashdir` module's `finish`, with this library's message (or `message`).
  subroutine done(status, stat, errmsg, message)
    integer(c_int), intent(in) :: status
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    character(len=*), intent(in), optional :: message
    character(len=:), allocatable :: text
    text = ""
    if (status /= HASHDIR_OK) text = hd_mpi_error_message()
    if (status /= HASHDIR_OK .and. present(message)) text = message
    if (present(stat)) then
      stat = int(status)
      if (present(errmsg)) errmsg = text
    else if (status /= HASHDIR_OK) then
      write (error_unit, '(a, ": ", a)') hd_status_name(status), text
      error stop 1
    end if
  end subroutine done

  !> Collective: opens (with HASHDIR_CREATE in the options, the default: creates) the store
  !> at `dir` with `shards_per_rank` shards a rank (default 1) over the communicator `comm`.
  subroutine mpi_open(self, dir, comm, shards_per_rank, options, stat, errmsg)
    class(hd_mpi), intent(inout) :: self
    character(len=*), intent(in) :: dir
    integer, intent(in) :: comm
    integer, intent(in), optional :: shards_per_rank
    type(hashdir_options), intent(in), optional :: options
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    type(hashdir_options) :: o
    integer(c_int32_t) :: k
    k = 1
    if (present(shards_per_rank)) k = int(shards_per_rank, c_int32_t)
    if (present(options)) then
      o = options
    else
      o = hd_options()
    end if
    call done(hashdir_mpi_open_f(dir // c_null_char, int(comm, c_int), k, o, self%handle), &
              stat, errmsg)
  end subroutine mpi_open

  !> Local: buffers pairs (keys(i), values(i)) for the next commit.
  subroutine mpi_insert(self, keys, values, stat, errmsg)
    class(hd_mpi), intent(inout) :: self
    type(hashdir_key), intent(in), contiguous :: keys(:)
    type(hashdir_value), intent(in), contiguous :: values(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    if (size(keys) /= size(values)) then
      call done(HASHDIR_ERR_INVALID_ARGUMENT, stat, errmsg, &
                "hd_mpi%insert: keys and values differ in length")
      return
    end if
    call done(hashdir_mpi_insert(self%handle, keys, values, size(keys, kind=c_size_t)), &
              stat, errmsg)
  end subroutine mpi_insert

  !> Collective: every rank's pairs to their owners, every shard committed.
  subroutine mpi_commit(self, stat, errmsg)
    class(hd_mpi), intent(inout) :: self
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    call done(hashdir_mpi_commit(self%handle), stat, errmsg)
  end subroutine mpi_commit

  !> Collective: found(i) says whether keys(i) has a value; first_values(i) is one of them.
  subroutine mpi_lookup(self, keys, found, first_values, stat, errmsg)
    class(hd_mpi), intent(inout) :: self
    type(hashdir_key), intent(in), contiguous :: keys(:)
    logical, intent(out) :: found(:)
    type(hashdir_value), intent(out), optional :: first_values(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    type(hashdir_value) :: first(size(keys))
    integer(c_int8_t) :: flags(size(keys))
    integer(c_int) :: status
    status = hashdir_mpi_lookup(self%handle, keys, size(keys, kind=c_size_t), first, flags)
    if (status == HASHDIR_OK) then
      found = flags /= 0
      if (present(first_values)) first_values = first
    end if
    call done(status, stat, errmsg)
  end subroutine mpi_lookup

  !> Collective: counts(i) values of keys(i), one key after the other in `values`, which is
  !> reallocated when too small. Always two collective calls: the second gives the values
  !> to the ranks whose buffers were too small (the others take part with no keys).
  subroutine mpi_get(self, keys, counts, values, total, stat, errmsg)
    class(hd_mpi), intent(inout) :: self
    type(hashdir_key), intent(in), contiguous :: keys(:)
    integer(c_int64_t), intent(out) :: counts(:)
    type(hashdir_value), allocatable, intent(inout) :: values(:)
    integer(c_size_t), intent(out) :: total
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    integer(c_int) :: status
    integer(c_int64_t) :: c(size(keys))
    integer(c_size_t) :: n, none
    if (.not. allocated(values)) allocate (values(0))
    n = size(keys, kind=c_size_t)
    status = hashdir_mpi_get(self%handle, keys, n, values, size(values, kind=c_size_t), c, total)
    if (status == HASHDIR_ERR_BUFFER_TOO_SMALL) then
      deallocate (values)
      allocate (values(total))
      status = hashdir_mpi_get(self%handle, keys, n, values, size(values, kind=c_size_t), c, &
                               total)
    else if (status == HASHDIR_OK) then
      status = hashdir_mpi_get(self%handle, keys, 0_c_size_t, values, 0_c_size_t, c, none)
    end if
    if (status == HASHDIR_OK) counts = c
    call done(status, stat, errmsg)
  end subroutine mpi_get

  !> Collective: the sums of all shards' counters.
  subroutine mpi_stats(self, st, stat, errmsg)
    class(hd_mpi), intent(inout) :: self
    type(hashdir_stats), intent(out) :: st
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    st%struct_size = int(c_sizeof(st), c_int32_t)
    call done(hashdir_mpi_stats(self%handle, st), stat, errmsg)
  end subroutine mpi_stats

  !> Local: seconds this rank spent in the exchange (MPI) and in the store (libhashdir).
  subroutine mpi_times(self, exchange_seconds, store_seconds, stat, errmsg)
    class(hd_mpi), intent(inout) :: self
    real(c_double), intent(out) :: exchange_seconds, store_seconds
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    call done(hashdir_mpi_times(self%handle, exchange_seconds, store_seconds), stat, errmsg)
  end subroutine mpi_times

  !> Collective: commits what is buffered, closes every shard, frees the handle.
  subroutine mpi_close(self, stat, errmsg)
    class(hd_mpi), intent(inout) :: self
    integer, intent(out), optional :: stat
    character(len=*), intent(out), optional :: errmsg
    integer(c_int) :: status
    status = hashdir_mpi_close(self%handle)
    self%handle = c_null_ptr
    call done(status, stat, errmsg)
  end subroutine mpi_close

  logical function mpi_is_open(self)
    class(hd_mpi), intent(in) :: self
    mpi_is_open = c_associated(self%handle)
  end function mpi_is_open

end module hashdir_mpi
