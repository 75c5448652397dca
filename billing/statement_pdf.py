"""A statement as a PDF, with fpdf2: pure Python and its built-in fonts, so no system
library (Cairo, Pango) nor font file needs installing.

The text is billing.statement_format's, the same as the printable page's. The built-in
Helvetica covers Latin-1 only: a character outside it (a tenant name in another script)
prints as "?", rather than failing the whole statement."""

from __future__ import annotations

from fpdf import FPDF
from fpdf.enums import Align, XPos, YPos

from billing.statement_format import LineText, StatementText, statement_text
from billing.statements import StatementView

FONT = "Helvetica"
LINE_HEADINGS = ("Model", "Tokens", "Quantity", "Unit price", "Amount (USD)")
COLUMN_WIDTHS = (62, 34, 28, 30, 26)  # mm, 180 in all: A4 less 15 mm margins
ALIGNS = ("LEFT", "LEFT", "RIGHT", "RIGHT", "RIGHT")


def latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


class _StatementPdf(FPDF):
    footer_text = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, size=8)
        self.set_text_color(110)
        self.cell(0, 5, latin1(self.footer_text), align=Align.L)
        self.cell(0, 5, f"page {self.page_no()}/{{nb}}", align=Align.R)


def _field(pdf: FPDF, label: str, value: str) -> None:
    pdf.set_font(FONT, "B", 9)
    pdf.cell(38, 6, latin1(label))
    pdf.set_font(FONT, size=9)
    pdf.multi_cell(0, 6, latin1(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _lines(pdf: FPDF, caption: str, lines: list[LineText], *, adjustment: bool) -> None:
    pdf.ln(3)
    pdf.set_font(FONT, "B", 11)
    pdf.cell(0, 7, latin1(caption), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=8.5)
    if not lines:
        pdf.cell(0, 6, "None.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        return
    with pdf.table(
        col_widths=COLUMN_WIDTHS,
        text_align=ALIGNS,
        line_height=5.5,
        first_row_as_headings=True,
        borders_layout="HORIZONTAL_LINES",
    ) as table:
        table.row(LINE_HEADINGS)
        for line in lines:
            model = f"{line.model} (usage of {line.adjustment_of})" if adjustment else line.model
            table.row(
                [latin1(model), line.kind, line.quantity, latin1(line.unit_price), line.amount]
            )


def _totals(pdf: FPDF, text: StatementText) -> None:
    pdf.ln(4)
    rows = [
        ("Subtotal", text.subtotal),
        ("Adjustments", text.adjustments_total),
        (text.markup_label, text.markup),
        ("Total (USD)", text.total_usd),
        (f"Total ({text.currency})", text.total),
    ]
    for index, (label, value) in enumerate(rows):
        last = index >= len(rows) - 2
        pdf.set_font(FONT, "B" if last else "", 10 if last else 9)
        pdf.set_x(pdf.l_margin + 70)
        pdf.cell(45, 6.5, latin1(label))
        pdf.multi_cell(0, 6.5, latin1(value), align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def statement_pdf(view: StatementView) -> bytes:
    """The statement `view` as the bytes of a PDF (A4)."""
    text = statement_text(view)
    pdf = _StatementPdf(format="A4")
    pdf.footer_text = f"{text.title} - {text.tenant} - {text.month}"
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(True, margin=18)
    pdf.set_title(latin1(f"{text.title} {text.tenant} {text.month}"))
    pdf.set_creator("LLM Gateway")
    pdf.add_page()

    pdf.set_font(FONT, "B", 18)
    pdf.cell(0, 10, latin1(text.title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if text.is_draft:
        pdf.set_font(FONT, "B", 10)
        pdf.set_text_color(170, 40, 40)
        pdf.cell(0, 6, "DRAFT: this month is not closed", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(0)
    pdf.ln(2)
    _field(pdf, "Tenant", text.tenant)
    _field(pdf, "Month", text.month)
    _field(pdf, "Period", text.period)
    _field(pdf, "Currency", text.currency)
    _field(pdf, "Exchange rate", text.rate)
    _field(pdf, "Status", text.closed)

    _lines(pdf, "Usage this month", text.lines, adjustment=False)
    _lines(
        pdf,
        "Adjustments: usage of closed months that arrived after their close",
        text.adjustments,
        adjustment=True,
    )
    _totals(pdf, text)
    return bytes(pdf.output())
