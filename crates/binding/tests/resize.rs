//! Resizable files (the Gunyah compat profile, DESIGN D13): the recorded
//! size follows `ftruncate`, MAP_MEM checks ranges against the current
//! size, and a file never shrinks below a bound range (SPEC GM-7).

use binding::{Access, Bindings, Error, MapRequest, PAGE_SIZE, Perms, errno};

const M: u64 = 1 << 20;

#[test]
fn the_busy_errno_matches_the_kernel() {
    assert_eq!(errno::EBUSY, libc::EBUSY);
}

#[test]
fn a_grown_file_accepts_bindings_up_to_its_new_end() {
    let mut reg = Bindings::new();
    let file = reg.create_file(4 * M, 0).unwrap();
    let vm = reg.create_vm();
    let req = MapRequest::new(0x8000_0000, file, 4 * M, M, Access::Share, Perms::RWX);
    // SPEC B-ADD-8: past the end of the 4 MiB file.
    assert_eq!(
        reg.map_mem(vm, &req.args()).unwrap_err().errno(),
        libc::EINVAL
    );
    assert_eq!(reg.set_file_size(file, 100 * M), Ok(4 * M));
    assert_eq!(reg.file_info(file).unwrap().size, 100 * M);
    reg.map_mem(vm, &req.args()).unwrap();
}

#[test]
fn shrinking_below_a_bound_range_is_busy_and_changes_nothing() {
    let mut reg = Bindings::new();
    let file = reg.create_file(20 * M, 0).unwrap();
    let vm = reg.create_vm();
    let req = MapRequest::new(0x8000_0000, file, 8 * M, 2 * M, Access::Lend, Perms::RWX);
    reg.map_mem(vm, &req.args()).unwrap();
    let err = reg.set_file_size(file, 10 * M - PAGE_SIZE).unwrap_err();
    assert_eq!(err.errno(), libc::EBUSY, "{err}");
    assert!(matches!(err, Error::ShrinkBelowBinding { bound_end, .. } if bound_end == 10 * M));
    assert_eq!(reg.file_info(file).unwrap().size, 20 * M);
    // Down to the end of the binding is fine, and so is any size once the
    // binding is gone (GM-7 protects only bound ranges).
    assert_eq!(reg.set_file_size(file, 10 * M), Ok(20 * M));
    reg.map_mem(vm, &req.unmap_args()).unwrap();
    assert_eq!(reg.set_file_size(file, 0), Ok(10 * M));
    assert_eq!(reg.set_file_size(file, 3 * M + 5), Ok(0));
}

#[test]
fn bindings_in_another_vm_also_hold_the_size() {
    let mut reg = Bindings::new();
    let file = reg.create_file(8 * M, 0).unwrap();
    let (a, b) = (reg.create_vm(), reg.create_vm());
    reg.map_mem(
        a,
        &MapRequest::new(0, file, 0, M, Access::Share, Perms::RWX).args(),
    )
    .unwrap();
    reg.map_mem(
        b,
        &MapRequest::new(0, file, 6 * M, M, Access::Share, Perms::R).args(),
    )
    .unwrap();
    assert_eq!(
        reg.set_file_size(file, 6 * M).unwrap_err().errno(),
        libc::EBUSY
    );
}

#[test]
fn a_closed_file_cannot_be_resized() {
    let mut reg = Bindings::new();
    let file = reg.create_file(4 * M, 0).unwrap();
    let vm = reg.create_vm();
    reg.map_mem(
        vm,
        &MapRequest::new(0, file, 0, M, Access::Share, Perms::RWX).args(),
    )
    .unwrap();
    reg.close_file(file).unwrap();
    // The binding keeps the record alive, but no descriptor can name it.
    assert_eq!(
        reg.set_file_size(file, 8 * M),
        Err(Error::UnknownFile(file))
    );
}
