//! A global allocator that counts the allocations each thread makes: shared by the benches
//! (`support::Counting`) and `tests/allocations.rs` (through `#[path]`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made by the current thread; allocates through [`System`].
pub struct Counting;

thread_local! {
    // Per thread: bench tasks and test threads each read their own count.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the count is a thread-local `Cell`, which does
// not allocate (`try_with` also covers a thread being torn down).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new) }
    }
}

/// Allocations the current thread has made so far.
pub fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}
