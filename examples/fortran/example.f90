! hashdir from Fortran 2008 through the hashdir module: write a batch, read it back,
! delete, refresh; then a sharded store (a directory of files, keys routed by hd_shard_of).
! Build (hashdir installed by scripts/install.sh, which installs the module's source):
!   gfortran -std=f2008 $(pkg-config --variable=fortran_source hashdir) example.f90 \
!       -o example $(pkg-config --libs hashdir)
! Run:   ./example /tmp/example.h5
! Prints one line per step; stops with a non-zero code (reason on stderr) if a check fails.
program example
  use, intrinsic :: iso_c_binding, only: c_int32_t, c_int64_t, c_size_t, c_sizeof
  use, intrinsic :: iso_fortran_env, only: error_unit
  use hashdir
  implicit none

  type(hd_writer) :: w, second, sw
  type(hd_reader) :: r, missing, sr
  type(hashdir_key), allocatable :: keys(:)
  type(hashdir_value), allocatable :: values(:), four(:), buffer(:), first(:)
  type(hashdir_stats) :: st
  type(hashdir_recovery) :: rec
  logical, allocatable :: found(:), in_store(:)
  integer, allocatable :: routed(:)
  integer(c_int64_t) :: counts(4), one_count(1), problems
  integer(c_size_t) :: total
  character(len=:), allocatable :: path, store
  character(len=512) :: msg, report
  character(len=4096) :: arg
  integer :: i, s, stat

  if (command_argument_count() >= 1) then
    call get_command_argument(1, arg)
    path = trim(arg)
  else
    path = "example.h5"
  end if
  call remove(path)
  call remove(path // ".copy")

  call w%open(path)                   ! creates the file (HASHDIR_CREATE is the default)

  ! Key 1 gets three values (and the pair (1, 10) twice: a set keeps it once), key 2 one,
  ! key 3 two: pairs (key, value).
  keys = hd_key([1, 1, 1, 1, 2, 3, 3])
  values = hd_value([10, 11, 12, 10, 20, 30, 31])
  call w%insert(keys, values)
  ! Key 4 gets a hundred values: one key and its values, the key given once.
  four = [(hd_value(999 + i), i = 1, 100)]
  call w%insert_values(hd_key(4), four)
  call w%commit()
  print '(a, i0, a)', "inserted ", size(keys) + size(four), " pairs (106 distinct) and committed"

  call r%open(path)
  allocate (found(4), first(4))
  call r%lookup(hd_key([1, 2, 3, 99]), found, first)
  call expect(all(found .eqv. [.true., .true., .true., .false.]), "lookup found 1, 2, 3, not 99")
  call expect(first(2) == hd_value(20), "key 2's only value is 20")
  call expect(any(hd_to_int(first(1)) == [10_c_int64_t, 11_c_int64_t, 12_c_int64_t]), &
              "key 1's first value is one of its values")
  print '(a)', "lookup: 1 found, 2 found, 3 found, 99 absent"

  ! get with a buffer of 4 values: the library answers HASHDIR_ERR_BUFFER_TOO_SMALL with
  ! the total it needs, and r%get calls again with a buffer that size.
  allocate (buffer(4))
  call r%get(hd_key([1, 99, 3, 4]), counts, buffer, total)
  call expect(all(counts == [3, 0, 2, 100]), "get counts 3 0 2 100")
  call expect(total == 105 .and. size(buffer) == 105, "the buffer grew to the 105 values")
  call expect(same_set(buffer(1:3), [10, 11, 12]), "key 1 values")
  call expect(same_set(buffer(4:5), [30, 31]), "key 3 values")
  call expect(same_set(buffer(6:105), [(999 + i, i = 1, 100)]), "key 4 values (insert_values)")
  print '(a)', "get: counts 3 0 2 100 (105 values, first buffer held 4)"

  ! One writer per file: a second one, here or in another process, is refused.
  call second%open(path, stat=stat, errmsg=msg)
  call expect(stat == HASHDIR_ERR_LOCKED, "second writer: HASHDIR_ERR_LOCKED")
  call expect(index(msg, "is locked: another writer has it open") > 0, "the message says why")
  call expect(.not. second%is_open(), "no handle for the refused writer")
  print '(a, a)', "second writer refused: ", hd_status_name(stat)
  print '(2x, a)', trim(msg)

  ! Delete key 2, and pairs (1, 11), (3, 30), (3, 31) and (5, 50), which is not there.
  call w%delete_keys([hd_key(2)])
  call w%delete_pairs(hd_key([1, 3, 3, 5]), hd_value([11, 30, 31, 50]))
  call w%commit()
  call r%lookup([hd_key(2)], found(1:1))
  call expect(found(1), "the reader's view is unchanged until refresh")
  print '(a)', "before refresh: key 2 still found"

  call r%refresh()
  call r%lookup(hd_key([1, 2, 3, 99]), found)
  call expect(all(found .eqv. [.true., .false., .false., .false.]), &
              "after refresh: 1 found, 2 and 3 absent")
  call r%get([hd_key(1)], one_count, buffer, total)
  call expect(one_count(1) == 2 .and. same_set(buffer(1:2), [10, 12]), "key 1 is {10, 12}")
  print '(a)', "after refresh: 1 found, 2 absent, 3 absent; key 1 values {10, 12}"

  call w%checkpoint()                 ! stats count as of the last checkpoint
  call w%stats(st)
  call expect(st%keys == 2 .and. st%values == 102, "2 keys (1 and 4), 102 values")
  print '(a, i0, a, i0)', "stats: keys ", st%keys, " values ", st%values

  ! Maintenance: what opening recovered (the C interface itself), a gc pass, and a
  ! compacted copy of the reader's view, which verifies clean.
  rec%struct_size = int(c_sizeof(rec), c_int32_t)
  stat = hashdir_writer_recovery(w%handle, rec, report, len(report, kind=c_size_t))
  call expect(stat == HASHDIR_OK .and. rec%batches_replayed == 0, "a new file replayed nothing")
  call w%gc()
  call r%copy(path // ".copy")
  call hd_verify(path // ".copy", problems, report)
  call expect(problems == 0 .and. index(report, "ok") == 1, "the copy verifies clean")
  print '(a)', "gc, copy and verify: the copy of the reader's view verifies clean"

  call missing%open(path // ".missing", stat=stat, errmsg=msg)
  call expect(stat == HASHDIR_ERR_NOT_FOUND, "missing file: HASHDIR_ERR_NOT_FOUND")
  call expect(index(msg, "does not exist") > 0, "the message says why")
  print '(a, a)', "missing file: ", hd_status_name(stat)
  print '(2x, a)', trim(msg)

  call r%close()
  call w%close()                      ! commits, checkpoints, releases the lock

  ! A sharded store: a directory of 3 ordinary hashdir files (shard_000.h5 ...), each
  ! holding the keys hd_shard_of routes to it; one writer commits to all three at once.
  store = path // ".store"
  call sw%open(store, hd_options(shards=3))
  keys = hd_key([(i, i = 1, 100)])
  values = hd_value([(1000 + i, i = 1, 100)])
  call sw%insert(keys, values)
  call sw%commit()
  call sw%close()
  call sr%open(store)                 ! readers open the directory as they open a file
  allocate (in_store(100))
  deallocate (first)
  allocate (first(100))
  call sr%lookup(keys, in_store, first)
  call expect(all(in_store) .and. all(first == values), "every key read through the store")
  call sr%close()
  routed = hd_shard_of(keys, 3)
  call expect(all(routed >= 0 .and. routed < 3) .and. any(routed == 0) .and. &
              any(routed == 1) .and. any(routed == 2), "hd_shard_of spreads the keys")
  do s = 0, 2
    write (arg, '(a, "/shard_", i3.3, ".h5")') store, s
    call sr%open(trim(arg))           ! a shard is an ordinary file
    call sr%lookup(keys, in_store)
    call expect(all(in_store .eqv. (routed == s)), "each shard holds exactly its keys")
    call sr%close()
  end do
  ! One shard's own writer (a process that owns shard 1): the store's writer must wait.
  call sw%open_shard(store, 1)
  call second%open(store, stat=stat)
  call expect(stat == HASHDIR_ERR_LOCKED, "the store's writer waits for the shard's")
  keys = hd_key([(i, i = 101, 200)])
  keys = pack(keys, hd_shard_of(keys, 3) == 1)   ! new keys that shard 1 holds
  call sw%insert(keys, [(hd_value(7), i = 1, size(keys))])
  call sw%commit()
  call sw%close()
  call sr%open(store)
  call sr%lookup(keys, in_store(1:size(keys)))
  call expect(all(in_store(1:size(keys))), "the shard writer's commit is in the store")
  call sr%close()
  print '(a)', "sharded store: 3 shards, 100 keys, each in the shard hd_shard_of names"
  print '(a)', "all checks passed"

contains

  !> Deletes the file `name` if there is one.
  subroutine remove(name)
    character(len=*), intent(in) :: name
    integer :: u, st
    open (newunit=u, file=name, status="old", iostat=st)
    if (st == 0) close (u, status="delete")
  end subroutine remove

  subroutine expect(ok, what)
    logical, intent(in) :: ok
    character(len=*), intent(in) :: what
    if (.not. ok) then
      write (error_unit, '(a, a)') "check failed: ", what
      error stop 1
    end if
  end subroutine expect

  !> Whether `got` holds exactly the values made from `want`, in any order.
  logical function same_set(got, want)
    type(hashdir_value), intent(in) :: got(:)
    integer, intent(in) :: want(:)
    integer :: j
    same_set = size(got) == size(want)
    do j = 1, size(want)
      same_set = same_set .and. any(got == hd_value(want(j)))
    end do
  end function same_set

end program example
