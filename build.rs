// Exposes `Py_3_x` cfgs so code can follow the running CPython's API differences.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
