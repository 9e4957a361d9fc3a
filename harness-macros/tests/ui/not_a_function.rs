use cvtest::cv_test;

#[cv_test(memory = "64M")]
struct NotAFunction;

fn main() {}
