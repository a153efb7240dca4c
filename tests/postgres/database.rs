//! A new, empty database on the test server for one test (shared by the suites that use
//! PostgreSQL through `#[path]`).

/// Creates a database named after `prefix` on the server `admin` names (a superuser's
/// connection string, URL or `key=value`) and returns the connection string of that database.
pub fn create(admin: &str, prefix: &str) -> String {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let create = format!("CREATE DATABASE {name}");
    let server = admin.to_owned();
    // The synchronous client runs its own runtime, so not on a test's runtime thread.
    std::thread::spawn(move || postgres::Client::connect(&server, postgres::NoTls).and_then(|mut c| c.batch_execute(&create)))
        .join()
        .expect("the database is created")
        .expect("the test server answers");
    if admin.starts_with("postgres://") || admin.starts_with("postgresql://") {
        let mut url = url::Url::parse(admin).expect("the server's connection string is a URL");
        url.set_path(&name);
        url.to_string()
    } else {
        format!("{admin} dbname={name}")
    }
}
