//! The seven HAM10000 / ISIC 2018 Task 3 diagnoses.

/// The order a model without class metadata is read in: alphabetical HAM10000 codes.
pub const HAM10000_CLASSES: [&str; 7] = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"];

/// Column order of the ISIC 2018 Task 3 submission CSV (after the `image` column).
pub const ISIC2018_COLUMNS: [&str; 7] = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"];

/// What a person should see next to a class code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ClassInfo {
    pub code: &'static str,
    pub name: &'static str,
    /// Malignant (or, for akiec, pre-malignant/in-situ) diagnoses are flagged in every UI.
    pub malignant: bool,
}

const INFO: [ClassInfo; 7] = [
    ClassInfo { code: "akiec", name: "Actinic keratosis / intraepithelial carcinoma", malignant: true },
    ClassInfo { code: "bcc", name: "Basal cell carcinoma", malignant: true },
    ClassInfo { code: "bkl", name: "Benign keratosis", malignant: false },
    ClassInfo { code: "df", name: "Dermatofibroma", malignant: false },
    ClassInfo { code: "mel", name: "Melanoma", malignant: true },
    ClassInfo { code: "nv", name: "Melanocytic nevus", malignant: false },
    ClassInfo { code: "vasc", name: "Vascular lesion", malignant: false },
];

/// Full name and malignancy flag of a HAM10000 code (case-insensitive); `None` for other codes.
pub fn class_info(code: &str) -> Option<ClassInfo> {
    INFO.iter().copied().find(|c| c.code.eq_ignore_ascii_case(code))
}

/// Index of each ISIC 2018 column in a model's class list, so probabilities can be written
/// in submission order whatever order the model stores its classes in.
pub fn isic2018_permutation(classes: &[String]) -> Option<[usize; 7]> {
    let mut perm = [0usize; 7];
    for (slot, column) in ISIC2018_COLUMNS.iter().enumerate() {
        perm[slot] = classes.iter().position(|c| c.eq_ignore_ascii_case(column))?;
    }
    Some(perm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isic_order_maps_alphabetical_codes() {
        let classes: Vec<String> = HAM10000_CLASSES.iter().map(|s| s.to_string()).collect();
        assert_eq!(isic2018_permutation(&classes), Some([4, 5, 1, 0, 2, 3, 6]));
        assert_eq!(isic2018_permutation(&classes[..6]), None);
    }

    #[test]
    fn malignant_flags() {
        let flagged: Vec<_> = HAM10000_CLASSES.iter().filter(|c| class_info(c).unwrap().malignant).collect();
        assert_eq!(flagged, [&"akiec", &"bcc", &"mel"]);
    }
}
