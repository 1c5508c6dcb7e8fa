"""The e-mail alert channel: one message per event over SMTP, STARTTLS before any credentials.

``send`` runs on the target's delivery thread (``notify._Worker``) and reports like an HTTP attempt:
(retryable, failure reason or None). The server certificate is verified (system CAs, or
``ca_file``); a password comes from the environment or a file at configuration time, never from
the YAML itself, and is never logged.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid


@dataclass(frozen=True)
class EmailSettings:
    host: str
    port: int = 587
    starttls: bool = True
    sender: str = ""
    to: tuple[str, ...] = ()
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None


def message(settings: EmailSettings, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject.replace("\r", " ").replace("\n", " ")[:200]
    msg["From"] = settings.sender
    msg["To"] = ", ".join(settings.to)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="otel-telemetry")
    msg.set_content(body)
    return msg


def send(settings: EmailSettings, subject: str, body: str, timeout: float) -> tuple[bool, str | None]:
    """One delivery attempt. Permanent refusals (5xx, bad credentials, a certificate that does not
    verify) are not retried; connection problems and 4xx are."""
    try:
        with smtplib.SMTP(settings.host, settings.port, timeout=timeout) as smtp:
            smtp.ehlo()
            if settings.starttls:
                ctx = ssl.create_default_context(cafile=settings.ca_file)
                smtp.starttls(context=ctx)
                smtp.ehlo()
            if settings.username and settings.password:
                # PLAIN when offered (inside TLS): smtplib's login() would try every other mechanism
                # after a definite refusal, and some servers hang on its LOGIN initial response.
                if "PLAIN" in (smtp.esmtp_features.get("auth") or "").upper().split():
                    smtp.user, smtp.password = settings.username, settings.password
                    smtp.auth("PLAIN", smtp.auth_plain)
                else:
                    smtp.login(settings.username, settings.password)
            refused = smtp.send_message(message(settings, subject, body))
        if refused:
            return False, f"recipients refused: {', '.join(sorted(refused))}"
        return False, None
    except smtplib.SMTPAuthenticationError as exc:
        return False, f"SMTP authentication failed ({exc.smtp_code})"
    except smtplib.SMTPNotSupportedError:
        return False, "the SMTP server does not offer STARTTLS"
    except smtplib.SMTPResponseException as exc:
        return exc.smtp_code < 500, f"SMTP {exc.smtp_code}"
    except ssl.SSLCertVerificationError as exc:
        return False, f"TLS certificate not trusted: {exc.verify_message}"
    except (smtplib.SMTPException, OSError) as exc:  # TimeoutError is an OSError
        return True, f"{type(exc).__name__}: {exc}"
