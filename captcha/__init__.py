"""captcha: learn to read text captchas with transfer learning."""
