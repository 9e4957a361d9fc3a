use cvtest::cv_test;

#[cv_test]
fn takes_arguments(size: usize, name: &str) {
    let _ = (size, name);
}

fn main() {}
