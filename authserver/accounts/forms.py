"""Forms: they check input shape and rules, never look anything up (services decide)."""

from __future__ import annotations

from typing import Any

from wtforms import BooleanField, PasswordField, RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from authserver.accounts import validation
from authserver.accounts.passwords import MAX_LENGTH, policy_errors
from authserver.web import BaseForm

CIVILITIES = [("madame", "Madame"), ("monsieur", "Monsieur")]


def _clean(field: Any, cleaner: Any, *args: Any) -> None:
    try:
        field.data = cleaner(field.data or "", *args)
    except validation.InvalidField as exc:
        raise ValidationError(str(exc)) from None


class PasswordPairMixin:
    password = PasswordField()
    password_confirm = PasswordField()

    def check_password_pair(self, *, username: str, email: str) -> bool:
        password = self.password.data or ""
        if not password:
            self.password.errors = ["Veuillez saisir un mot de passe."]
            return False
        errors = policy_errors(password, username=username, email=email)
        if errors:
            self.password.errors = errors
            return False
        if password != (self.password_confirm.data or ""):
            self.password_confirm.errors = ["Les deux mots de passe ne sont pas identiques."]
            return False
        return True


class SignupForm(PasswordPairMixin, BaseForm):
    # In the page's order (fields are listed in the order they are declared, and the error
    # summary at the top of the page lists them so): the password pair again, after username.
    username = StringField()
    # « Sans mot de passe » (issue 14): the account's first passkey is made at activation.
    passwordless = BooleanField()
    password = PasswordField()
    password_confirm = PasswordField()
    civility = RadioField(
        choices=[SelectChoice(value, label) for value, label in CIVILITIES], validate_choice=False
    )
    last_name = StringField()
    first_name = StringField()
    email = StringField()
    phone = StringField()
    cgu = BooleanField()

    def validate_username(self, field: StringField) -> None:
        _clean(field, validation.clean_username)

    def validate_civility(self, field: RadioField) -> None:
        if field.data not in dict(CIVILITIES):
            raise ValidationError("Veuillez choisir votre civilité.")

    def validate_last_name(self, field: StringField) -> None:
        _clean(field, validation.clean_name, "nom")

    def validate_first_name(self, field: StringField) -> None:
        _clean(field, validation.clean_name, "prénom")

    def validate_email(self, field: StringField) -> None:
        _clean(field, validation.clean_email)

    def validate_phone(self, field: StringField) -> None:
        _clean(field, validation.clean_phone)

    def validate_cgu(self, field: BooleanField) -> None:
        if not field.data:
            raise ValidationError(
                "Vous devez accepter les conditions générales d'utilisation pour créer un compte."
            )

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        if self.passwordless.data:
            # Nothing typed there is kept: the account will have no password.
            self.password.data = self.password_confirm.data = ""
            self.password.errors = []
            self.password_confirm.errors = []
            return valid
        username = self.username.data if not self.username.errors else ""
        email = self.email.data if not self.email.errors else ""
        return self.check_password_pair(username=username or "", email=email or "") and valid


def login_username_problem(typed: str) -> str | None:
    """What is wrong with an identifiant typed on the login page (already stripped), if
    anything: the form and the password login fast path (password_fastpath.py) ask here."""
    if not typed:
        return "Veuillez saisir votre identifiant."
    if len(typed) > 254:
        return "Identifiant invalide."
    return None


def login_password_problem(typed: str) -> str | None:
    if not typed:
        return "Veuillez saisir votre mot de passe."
    if len(typed) > MAX_LENGTH * 4:
        return "Mot de passe invalide."
    return None


class LoginForm(BaseForm):
    username = StringField()
    password = PasswordField()

    def validate_username(self, field: StringField) -> None:
        field.data = (field.data or "").strip()
        problem = login_username_problem(field.data)
        if problem:
            raise ValidationError(problem)

    def validate_password(self, field: PasswordField) -> None:
        problem = login_password_problem(field.data or "")
        if problem:
            raise ValidationError(problem)


class AccountLookupForm(BaseForm):
    """Identifiant or e-mail, for a reset or a new activation link."""

    username = StringField()
    email = StringField()

    def validate(self, extra_validators: Any = None) -> bool:
        if not super().validate(extra_validators):
            return False
        self.username.data = (self.username.data or "").strip()[:254]
        self.email.data = (self.email.data or "").strip()[:254]
        if not self.username.data and not self.email.data:
            self.username.errors = ["Veuillez saisir votre identifiant ou votre adresse e-mail."]
            return False
        return True


class ResendForm(BaseForm):
    username = StringField()


class ChangePasswordForm(PasswordPairMixin, BaseForm):
    current_password = PasswordField()

    def validate_for(self, *, username: str, email: str, needs_current: bool) -> bool:
        valid = self.validate()
        if needs_current and not self.current_password.data:
            self.current_password.errors = ["Veuillez saisir votre mot de passe actuel."]
            valid = False
        return self.check_password_pair(username=username, email=email) and valid


class ResetPasswordForm(PasswordPairMixin, BaseForm):
    def validate_for(self, *, username: str, email: str) -> bool:
        return self.validate() and self.check_password_pair(username=username, email=email)


class RecoveryCodeForm(BaseForm):
    """« Utiliser un code de récupération »: the identifiant and one of the account's codes."""

    username = StringField()
    code = StringField()

    def validate(self, extra_validators: Any = None) -> bool:
        if not super().validate(extra_validators):
            return False
        self.username.data = (self.username.data or "").strip()[:254]
        self.code.data = (self.code.data or "").strip()[:64]
        valid = True
        if not self.username.data:
            self.username.errors = ["Veuillez saisir votre identifiant."]
            valid = False
        if not self.code.data:
            self.code.errors = ["Veuillez saisir un de vos codes de récupération."]
            valid = False
        return valid
