//! File names, as attachment policies and channels judge files by them.

/// The file's extension (with the dot, as written) from its name, or else from the last segment
/// of its URL's path.
pub fn extension(file_name: Option<&str>, url: Option<&str>) -> Option<String> {
    let from_url = url.and_then(|u| url::Url::parse(u).ok()).and_then(|u| u.path_segments()?.next_back().map(str::to_owned));
    let name = file_name.map(str::to_owned).or(from_url)?;
    let dot = name.rfind('.')?;
    (dot + 1 < name.len()).then(|| name[dot..].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_come_from_the_name_or_the_url() {
        assert_eq!(extension(Some("report.PDF"), None).as_deref(), Some(".PDF"));
        assert_eq!(extension(None, Some("https://x.example/files/setup.exe?sig=1")).as_deref(), Some(".exe"));
        assert_eq!(extension(Some("README"), Some("https://x.example/a.exe")), None, "the name wins over the URL");
        assert_eq!(extension(Some("trailing."), None), None);
        assert_eq!(extension(None, Some("not a url")), None);
    }
}
