//! Interior mutability for state that is only ever touched while the GIL is held.
//!
//! The extension module is declared `gil_used = true`, so every method of our pyclasses runs with
//! the GIL held, and the loop thread touches loop state only while it holds the GIL (it releases the
//! GIL solely around the blocking wait inside libuv, where no Python-visible state is read or
//! written). The GIL therefore serialises all access; these cells make that argument explicit by
//! asking for a `Python` token, and `GilRefCell` still catches re-entrant borrows at run time, so a
//! callback that re-enters the loop can never alias a live `&mut`.

use std::cell::{Cell, Ref, RefCell, RefMut};

use pyo3::Python;

/// A `Cell` shared between threads under the protection of the GIL.
pub struct GilCell<T: Copy>(Cell<T>);

// SAFETY: every access goes through `get`/`set`, which require a `Python` token, i.e. the GIL is
// held by the calling thread, so no two threads touch the cell at the same time.
unsafe impl<T: Copy + Send> Sync for GilCell<T> {}

impl<T: Copy> GilCell<T> {
    pub const fn new(value: T) -> Self {
        Self(Cell::new(value))
    }

    #[inline]
    pub fn get(&self, _py: Python<'_>) -> T {
        self.0.get()
    }

    #[inline]
    pub fn set(&self, _py: Python<'_>, value: T) {
        self.0.set(value)
    }

    #[inline]
    pub fn replace(&self, _py: Python<'_>, value: T) -> T {
        self.0.replace(value)
    }
}

/// A `RefCell` shared between threads under the protection of the GIL.
///
/// Borrows must never be held across a call into Python: Python code can re-enter the loop.
pub struct GilRefCell<T>(RefCell<T>);

// SAFETY: every access goes through `borrow`/`borrow_mut`, which require a `Python` token, so only
// the thread holding the GIL can reach the inner `RefCell`, whose own flag rejects re-entrant
// mutable borrows on that thread.
unsafe impl<T: Send> Sync for GilRefCell<T> {}

impl<T> GilRefCell<T> {
    pub const fn new(value: T) -> Self {
        Self(RefCell::new(value))
    }

    #[inline]
    pub fn borrow<'a>(&'a self, _py: Python<'_>) -> Ref<'a, T> {
        self.0.borrow()
    }

    #[inline]
    pub fn borrow_mut<'a>(&'a self, _py: Python<'_>) -> RefMut<'a, T> {
        self.0.borrow_mut()
    }

    /// A shared borrow, or None if the value is being mutated (used where failing is harmless).
    pub fn try_borrow<'a>(&'a self, _py: Python<'_>) -> Option<Ref<'a, T>> {
        self.0.try_borrow().ok()
    }

    /// Takes the value out, leaving `T::default()`; used to drop Python references outside a borrow.
    pub fn take(&self, _py: Python<'_>) -> T
    where
        T: Default,
    {
        self.0.take()
    }

    pub fn replace(&self, _py: Python<'_>, value: T) -> T {
        self.0.replace(value)
    }
}
