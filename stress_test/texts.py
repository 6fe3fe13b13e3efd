"""Sentences the load generator speaks, cycled in order.

The built-in list mixes the languages the service is used for (English, Malay, Chinese,
Tamil, Indonesian, code-switched Malaysian English) and lengths from one word to a short
paragraph, so a run exercises short-request latency and long-request RTF together.
"""

from __future__ import annotations

from pathlib import Path

BUILTIN_TEXTS: tuple[str, ...] = (
    # English
    "Hello!",
    "Good morning, everyone.",
    "Hello! How can I help you? Can I get your passport number, sir?",
    "The quick brown fox jumps over the lazy dog.",
    "Your appointment has been confirmed for Thursday at half past three in the afternoon.",
    ("Please remember to bring your identity card and a copy of your latest utility bill "
    "when you visit the branch."),
    ("Thank you for calling customer support. All of our agents are currently busy assisting "
    "other customers, so please stay on the line and your call will be answered in the order "
    "it was received. Alternatively, you can visit our website to track your order, update "
    "your address or request a refund at any time of the day."),
    "Your total is RM 1,234.50, payable by the 15th of March 2025.",
    # Malay
    "Terima kasih.",
    "Ye encik, apa yang saya boleh tolong?",
    "Sila sediakan nombor kad pengenalan anda sebelum bercakap dengan pegawai kami.",
    ("Selamat pagi, semua. Hari ini kita akan membincangkan rancangan projek untuk suku tahun "
    "depan."),
    ("Cuaca di Kuala Lumpur dijangka panas dan lembap sepanjang minggu ini, dengan kemungkinan "
    "hujan lebat pada waktu petang."),
    ("Kerajaan telah mengumumkan beberapa langkah baharu untuk membantu peniaga kecil, termasuk "
    "geran khas, pinjaman tanpa faedah dan latihan digital percuma yang akan dilaksanakan di "
    "seluruh negara bermula bulan hadapan."),
    "Boleh tak you check dulu status order saya, sebab dah seminggu tak sampai lagi.",
    # Chinese
    "你好！",
    "请问您需要什么帮助？",
    "今天天气很好，我们一起去公园散步吧。",
    "您的包裹已经发出，预计将在三到五个工作日内送达，请留意短信通知。",
    ("欢迎致电客户服务中心。目前所有客服人员都在忙线中，请您耐心等候，我们会按照来电顺序尽快为您"
    "服务。您也可以登录我们的网站查询订单状态或申请退款。"),
    # Tamil
    "வணக்கம்!",
    "நன்றி, மீண்டும் வருக.",
    "உங்களுக்கு நான் எப்படி உதவ முடியும்?",
    "இன்று மாலை கோலாலம்பூரில் கனமழை பெய்யக்கூடும்.",
    "உங்கள் முன்பதிவு உறுதிசெய்யப்பட்டது. தயவுசெய்து உங்கள் அடையாள அட்டையை கொண்டு வாருங்கள்.",
    # Indonesian
    "Oke, sampai jumpa besok!",
    "Selamat siang, ada yang bisa saya bantu?",
    "Mohon tunggu sebentar, pesanan Anda sedang kami proses.",
    "Kereta api menuju Bandung akan berangkat dari jalur tiga dalam sepuluh menit.",
    ("Terima kasih telah menghubungi layanan pelanggan kami. Untuk informasi tagihan, tekan "
    "satu; untuk bantuan teknis, tekan dua; atau tetap di saluran ini untuk berbicara dengan "
    "petugas kami."),
)


def read_texts(path: Path) -> list[str]:
    """One text per non-blank line of a UTF-8 file, surrounding whitespace stripped."""
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    texts = [text for text in texts if text]
    if not texts:
        raise ValueError(f"{path} has no texts")
    return texts
