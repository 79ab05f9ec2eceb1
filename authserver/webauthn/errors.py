"""One exception per ceremony failure, each with its machine code and French message.

Protocol code raises these; the JSON views turn them into the contract's error form.
"""

from __future__ import annotations


class CeremonyError(Exception):
    status = 400
    error = "invalid_credential"
    message = "La clé d'accès n'a pas pu être vérifiée."

    def __init__(self, detail: str = "") -> None:
        # ``detail`` is for logs and tests (what was expected, what arrived); never shown.
        super().__init__(detail or self.error)
        self.detail = detail
        # The account the credential belongs to, once known (for the login event).
        self.user: object | None = None


class MalformedCredential(CeremonyError):
    error = "malformed_credential"
    message = "La réponse de la clé d'accès est mal formée."


class ChallengeInvalid(CeremonyError):
    error = "challenge_invalid"
    message = "Cette demande de connexion a expiré ou a déjà été utilisée. Veuillez réessayer."


class OriginMismatch(CeremonyError):
    error = "origin_mismatch"
    message = "La clé d'accès a été utilisée depuis un site non autorisé."


class CrossOriginRefused(CeremonyError):
    error = "cross_origin"
    message = "La clé d'accès ne peut pas être utilisée depuis un cadre d'un autre site."


class VerificationFailed(CeremonyError):
    error = "verification_failed"
    message = "La clé d'accès n'a pas pu être vérifiée."


class UserVerificationRequired(CeremonyError):
    error = "user_verification_required"
    message = (
        "Votre appareil n'a pas vérifié votre identité (empreinte, visage ou code PIN). "
        "Veuillez réessayer."
    )


class UnknownCredential(CeremonyError):
    status = 401
    error = "unknown_credential"
    message = "Cette clé d'accès n'est pas reconnue. Connectez-vous avec votre mot de passe."


class UserHandleMismatch(CeremonyError):
    status = 401
    error = "user_handle_mismatch"
    message = "Cette clé d'accès n'appartient pas à ce compte."


class CloneDetected(CeremonyError):
    status = 401
    error = "credential_cloned"
    # The passkey whose counter did not move: marked cloned only once the ceremony is spent.
    credential: object | None = None
    message = (
        "Cette clé d'accès semble avoir été copiée : elle est bloquée par sécurité. "
        "Connectez-vous avec votre mot de passe et supprimez-la."
    )


class BackupEligibilityChanged(CeremonyError):
    status = 401
    error = "backup_eligibility_mismatch"
    message = "Cette clé d'accès ne correspond plus à celle enregistrée."


class AlreadyRegistered(CeremonyError):
    status = 409
    error = "already_registered"
    message = "Cette clé d'accès est déjà enregistrée."


class AccountUnavailable(CeremonyError):
    status = 403
    error = "account_unavailable"
    message = "Ce compte ne peut pas se connecter pour le moment."


class PasskeyUnderReview(AccountUnavailable):
    """A passkey suspended by a recovery (« Ce n'était pas moi », a password reset link) until
    its owner vouches for it (webauthn/review.py). Same code as any unavailable account for
    the login events and the console; the message says what to do."""

    message = (
        "Cette clé d'accès est suspendue depuis la sécurisation de votre compte. "
        "Pour vous connecter, choisissez un nouveau mot de passe avec « Mot de passe oublié ? » "
        "(ou avec le lien reçu par e-mail), puis connectez-vous avec ce mot de passe. "
        "Votre clé d'accès fonctionnera de nouveau dès que vous l'aurez confirmée sur la page "
        "« Mes clés d'accès »."
    )


class AuthenticatorNotAllowed(CeremonyError):
    status = 403
    error = "authenticator_not_allowed"
    message = (
        "Ce modèle de clé d'accès n'est pas autorisé pour les comptes d'agents France Travail. "
        "Utilisez une clé de sécurité fournie par votre service."
    )
