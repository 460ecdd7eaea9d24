! hashdir from MPI in Fortran: every rank loads its part of N pairs into one sharded store
! with collective commits, then checks them with routed gets and lookups (the Fortran
! counterpart of load.c, through the modules hashdir and hashdir_mpi).
!
! Build (hashdir and hashdir_mpi installed by scripts/install.sh):
!   mpifort $(pkg-config --variable=fortran_source hashdir) \
!       $(pkg-config --variable=fortran_source hashdir_mpi) load.f90 -o load_f \
!       $(pkg-config --libs hashdir_mpi)
! Run:   mpirun -np 4 ./load_f /tmp/store [pairs] [values-per-key] [batch]
!
! Key i (0 <= i < N / V) has the values i * V .. i * V + V - 1; rank r inserts the keys
! r, r + size, ... Rank 0 prints one JSON line; a failed check stops with a non-zero code.
program load
  use, intrinsic :: iso_c_binding, only: c_int64_t, c_size_t, c_double
  use, intrinsic :: iso_fortran_env, only: error_unit
  use mpi_f08
  use hashdir
  use hashdir_mpi
  implicit none

  type(hd_mpi) :: h
  type(hashdir_key), allocatable :: keys(:)
  type(hashdir_value), allocatable :: values(:)
  integer(c_int64_t), allocatable :: counts(:)
  logical, allocatable :: found(:)
  integer(c_size_t) :: total
  integer(c_int64_t) :: pairs, per_key, batch, nkeys, mine, most, per_batch, first, q, i, j
  integer(c_int64_t) :: n, at, checked, all_checked, sum_v
  real(c_double) :: t0, load_s, check_s, ex0, st0, ex, st, max_ex, max_st
  character(len=4096) :: dir
  integer :: rank, size, ierr

  call MPI_Init(ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank)
  call MPI_Comm_size(MPI_COMM_WORLD, size)
  if (command_argument_count() < 1) then
    if (rank == 0) write (error_unit, '(a)') "usage: load_f DIR [pairs] [values-per-key] [batch]"
    call MPI_Abort(MPI_COMM_WORLD, 2)
  end if
  call get_command_argument(1, dir)
  pairs = arg(2, 100000_c_int64_t)
  per_key = arg(3, 1_c_int64_t)
  batch = arg(4, 10000_c_int64_t)
  nkeys = pairs / per_key
  pairs = nkeys * per_key
  mine = nkeys / size
  if (rank < mod(nkeys, int(size, c_int64_t))) mine = mine + 1
  most = (nkeys + size - 1) / size
  per_batch = max(1_c_int64_t, batch / per_key)

  ! The communicator as an MPI_Fint: MPI_COMM_WORLD%MPI_VAL (with `use mpi`: MPI_COMM_WORLD).
  call h%open(trim(dir), MPI_COMM_WORLD%MPI_VAL)
  call h%times(ex0, st0)
  call MPI_Barrier(MPI_COMM_WORLD)
  t0 = MPI_Wtime()
  first = 0
  do while (first < most)
    n = 0
    do q = first, min(mine, first + per_batch) - 1
      n = n + per_key
    end do
    allocate (keys(n), values(n))
    at = 0
    do q = first, min(mine, first + per_batch) - 1
      i = q * size + rank
      do j = 0, per_key - 1
        at = at + 1
        keys(at) = hd_key(i)
        values(at) = hd_value(i * per_key + j)
      end do
    end do
    call h%insert(keys, values)
    call h%commit()
    deallocate (keys, values)
    first = first + per_batch
  end do
  load_s = MPI_Wtime() - t0
  call h%times(ex, st)
  ex = ex - ex0
  st = st - st0

  call MPI_Barrier(MPI_COMM_WORLD)
  t0 = MPI_Wtime()
  checked = 0
  first = 0
  do while (first < most)
    n = max(0_c_int64_t, min(mine, first + per_batch) - first)
    allocate (keys(n), counts(n), found(n))
    do q = 1, n
      keys(q) = hd_key((first + q - 1) * size + rank)
    end do
    call h%get(keys, counts, values, total)
    call expect(total == n * per_key, "get: wrong total")
    at = 0
    do q = 1, n
      i = (first + q - 1) * size + rank
      call expect(counts(q) == per_key, "get: wrong count")
      sum_v = 0
      do j = 1, per_key
        at = at + 1
        call expect(hd_to_int(values(at)) / per_key == i, "get: a value of another key")
        sum_v = sum_v + hd_to_int(values(at)) - i * per_key
      end do
      call expect(sum_v == per_key * (per_key - 1) / 2, "get: not the key's values")
    end do
    checked = checked + n
    ! Keys never inserted, and the first key of the batch.
    do q = 1, n
      keys(q) = hd_key(nkeys + (first + q - 1) * size + rank)
    end do
    if (n > 0) keys(1) = hd_key(first * size + rank)
    call h%lookup(keys, found)
    do q = 1, n
      call expect(found(q) .eqv. (q == 1), "lookup: wrong found flag")
    end do
    deallocate (keys, counts, found)
    first = first + per_batch
  end do
  check_s = MPI_Wtime() - t0

  call MPI_Reduce(checked, all_checked, 1, MPI_INTEGER8, MPI_SUM, 0, MPI_COMM_WORLD)
  call MPI_Reduce(ex, max_ex, 1, MPI_DOUBLE_PRECISION, MPI_MAX, 0, MPI_COMM_WORLD)
  call MPI_Reduce(st, max_st, 1, MPI_DOUBLE_PRECISION, MPI_MAX, 0, MPI_COMM_WORLD)
  call h%close()
  if (rank == 0) then
    call expect(all_checked == nkeys, "not every key was checked")
    write (*, '(a, i0, a, i0, a, i0, a, i0, 2a, a, i0, a, i0, 7a, i0, a)') &
      '{"example": "fortran", "pairs": ', pairs, ', "values_per_key": ', per_key, &
      ', "ranks": ', size, ', "batch": ', batch, ', "load_seconds": ', num(load_s), &
      ', "pairs_per_s": ', nint(pairs / load_s, c_int64_t), &
      ', "pairs_per_s_per_rank": ', nint(pairs / load_s / size, c_int64_t), &
      ', "exchange_seconds": ', num(max_ex), ', "store_seconds": ', num(max_st), &
      ', "check_seconds": ', num(check_s), ', "keys_checked": ', all_checked, '}'
  end if
  call MPI_Finalize()

contains

  ! Seconds as a JSON number (f0.3 alone leaves out the 0 before the point).
  function num(x) result(s)
    real(c_double), intent(in) :: x
    character(len=:), allocatable :: s
    character(len=32) :: text
    write (text, '(f0.3)') x
    s = trim(text)
    if (s(1:1) == '.') s = '0' // s
  end function num

  function arg(k, dflt) result(v)
    integer, intent(in) :: k
    integer(c_int64_t), intent(in) :: dflt
    integer(c_int64_t) :: v
    character(len=64) :: text
    v = dflt
    if (command_argument_count() >= k) then
      call get_command_argument(k, text)
      read (text, *) v
    end if
  end function arg

  subroutine expect(cond, what)
    logical, intent(in) :: cond
    character(len=*), intent(in) :: what
    if (.not. cond) then
      write (error_unit, '(a, i0, a, a)') "rank ", rank, ": check failed: ", what
      call MPI_Abort(MPI_COMM_WORLD, 1)
    end if
  end subroutine expect
end program load
