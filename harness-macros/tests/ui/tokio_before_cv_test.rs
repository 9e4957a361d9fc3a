use cvtest::cv_test;

// #[tokio::test] expands first and makes a test of its own; #[cv_test] must come first.
#[tokio::test]
#[cv_test(memory = "64M")]
async fn wrong_order() {}

fn main() {}
