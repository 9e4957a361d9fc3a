use cvtest::cv_test;

#[cv_test(cpu_weight = "0")]
fn too_light() {}

#[cv_test(cpu_weight = "10001")]
fn too_heavy() {}

fn main() {}
