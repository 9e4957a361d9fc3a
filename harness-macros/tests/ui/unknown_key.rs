use cvtest::cv_test;

#[cv_test(memroy = "1G")]
fn misspelled() {}

fn main() {}
