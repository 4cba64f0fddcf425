"""`captcha label`: a local page that proposes each captcha's reading, you confirm or correct it."""
