//! Every word the hosted pages show, in one place: a translation is one
//! more [`Strings`] value. `{product}` is replaced by `login.product_name`.

/// The text of the login, second-step, consent, sign-out and error pages.
#[derive(Debug)]
pub struct Strings {
    pub lang: &'static str,
    pub sign_in_title: &'static str,
    pub sign_in_intro: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    pub sign_in: &'static str,
    pub second_step_title: &'static str,
    pub second_step_intro: &'static str,
    pub code: &'static str,
    pub code_hint: &'static str,
    pub recovery_code: &'static str,
    pub recovery_hint: &'static str,
    pub verify: &'static str,
    pub wrong_credentials: &'static str,
    pub wrong_code: &'static str,
    pub one_code: &'static str,
    pub start_again: &'static str,
    /// Followed by a duration.
    pub locked: &'static str,
    pub rate_limited: &'static str,
    pub unavailable: &'static str,
    pub form_expired: &'static str,
    pub signed_in_title: &'static str,
    pub signed_in_as: &'static str,
    pub sign_out: &'static str,
    pub sign_out_title: &'static str,
    pub sign_out_intro: &'static str,
    pub signed_out_title: &'static str,
    pub signed_out: &'static str,
    pub consent_title: &'static str,
    /// Followed by the application's name.
    pub consent_intro: &'static str,
    pub allow: &'static str,
    pub deny: &'static str,
    pub error_title: &'static str,
    pub error_intro: &'static str,
    pub seconds: &'static str,
    pub minutes: &'static str,
    pub scope_openid: &'static str,
    pub scope_profile: &'static str,
    pub scope_email: &'static str,
    pub scope_offline_access: &'static str,
    /// Followed by the scope's name.
    pub scope_other: &'static str,
    pub insecure_note: &'static str,
    pub providers_title: &'static str,
    /// Followed by the provider's `display_name`.
    pub sign_in_with: &'static str,
    pub provider_failed_title: &'static str,
    pub back_to_sign_in: &'static str,
    /// `{provider}` is its `display_name`.
    pub provider_down: &'static str,
    pub provider_refused: &'static str,
    pub provider_unverified: &'static str,
    pub provider_start_again: &'static str,
    pub provider_unknown: &'static str,
    pub account_deactivated: &'static str,
}

/// English.
pub const EN: Strings = Strings {
    lang: "en",
    sign_in_title: "Sign in to {product}",
    sign_in_intro: "Use your {product} account.",
    username: "Username",
    password: "Password",
    sign_in: "Sign in",
    second_step_title: "Second step",
    second_step_intro: "Your account has a second factor. Enter the code your authenticator app shows, or one of your recovery codes.",
    code: "Code from the authenticator app",
    code_hint: "Six digits",
    recovery_code: "Or a recovery code",
    recovery_hint: "Each recovery code works once",
    verify: "Verify",
    wrong_credentials: "The username or password is not right.",
    wrong_code: "The code is not right, or was used before.",
    one_code: "Enter either a code from the app or a recovery code.",
    start_again: "Please sign in again.",
    locked: "Too many attempts. Try again in",
    rate_limited: "Too many attempts from your network. Try again in",
    unavailable: "Signing in is not possible right now. Please try again in a moment.",
    form_expired: "This form has expired or was not sent from this page. Please try again.",
    signed_in_title: "Signed in",
    signed_in_as: "You are signed in as",
    sign_out: "Sign out",
    sign_out_title: "Sign out of {product}?",
    sign_out_intro: "You will be signed out of {product} in this browser.",
    signed_out_title: "Signed out",
    signed_out: "You are signed out of {product}.",
    consent_title: "Allow access?",
    consent_intro: "This application asks to use your {product} account:",
    allow: "Allow",
    deny: "Deny",
    error_title: "This request cannot be completed",
    error_intro: "The application that sent you here made a request {product} cannot accept:",
    seconds: "seconds",
    minutes: "minutes",
    scope_openid: "Know who you are (your account id)",
    scope_profile: "See your username and name",
    scope_email: "See your e-mail address",
    scope_offline_access: "Stay connected when you are not using it",
    scope_other: "Access:",
    insecure_note: "This connection is not encrypted: use it on this computer only.",
    providers_title: "Or use your organisation's account",
    sign_in_with: "Sign in with",
    provider_failed_title: "Sign-in not completed",
    back_to_sign_in: "Back to sign-in",
    provider_down: "{provider} cannot be reached right now. Please try again in a moment, or sign in with your password.",
    provider_refused: "{provider} did not sign you in.",
    provider_unverified: "The answer from {provider} could not be verified, so you are not signed in.",
    provider_start_again: "This sign-in was not started in this browser, was already used, or took too long. Please start again.",
    provider_unknown: "This way of signing in is not offered.",
    account_deactivated: "This account is deactivated. Ask an administrator.",
};

impl Strings {
    /// What the consent page says a scope lets the application do.
    pub fn scope(&self, scope: &str) -> Option<&'static str> {
        match scope {
            "openid" => Some(self.scope_openid),
            "profile" => Some(self.scope_profile),
            "email" => Some(self.scope_email),
            "offline_access" => Some(self.scope_offline_access),
            _ => None,
        }
    }

    /// A wait, in words (`Retry-After` seconds).
    pub fn wait(&self, secs: u64) -> String {
        if secs < 120 {
            format!("{secs} {}", self.seconds)
        } else {
            format!("{} {}", secs.div_ceil(60), self.minutes)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_naturally() {
        assert_eq!(EN.wait(30), "30 seconds");
        assert_eq!(EN.wait(600), "10 minutes");
        assert_eq!(EN.wait(601), "11 minutes");
        assert_eq!(EN.scope("email"), Some(EN.scope_email));
        assert_eq!(EN.scope("orders:read"), None);
    }
}
